"""The examples, run in this process (`.local()`) with the tiny offline models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PIPELINE = EXAMPLES / "image_pipeline"


@pytest.fixture(scope="module", autouse=True)
def _examples_on_path():
    import torch

    torch.set_num_threads(1)
    paths = [str(PIPELINE), str(EXAMPLES / "hello")]
    sys.path[:0] = paths
    yield
    for p in paths:
        sys.path.remove(p)


@pytest.fixture(scope="module")
def painter():
    from painter import Painter

    return Painter.local()  # an instance with setup() run


def _is_picture(image, size: tuple[int, int]) -> bool:
    import numpy as np

    return image.size == size and image.mode == "RGB" and np.asarray(image).std() > 1


def test_hello_greets_and_draws_a_gradient():
    from hello import gradient, greet

    assert greet.local("world") == "Hello, world!"
    image = gradient.local(width=200, height=100)
    assert image.size == (200, 100) and image.mode == "RGB"
    assert image.getpixel((0, 0))[0] < 10 and image.getpixel((199, 0))[0] > 245


@pytest.mark.parametrize("n", [1, 4, 7])
def test_tiny_prompt_writer_returns_n_distinct_prompts_about_the_idea(n):
    from prompts import write_prompts

    prompts = write_prompts.local("a fox reading in a library", n=n, model="tiny/qwen3", seed=0)
    assert len(prompts) == n
    assert len({p.lower() for p in prompts}) == n
    assert all("a fox reading in a library" in p for p in prompts)


def test_prompts_from_a_real_reply_are_kept_and_cleaned():
    from prompts import finish_prompts, parse_prompts

    reply = (
        "<think>\n\n</think>\n"
        "1. A red fox curled in a leather armchair, reading by lamplight, amber and walnut tones\n"
        '2) "A fox on a library ladder, dust motes in slanted window light, sage and cream"\n'
        "\n"
        "- Prompt 3: Overhead view of a fox asleep on open books, cool moonlight, indigo palette\n"
        "Sure!\n"
    )
    found = parse_prompts(reply)
    assert found == [
        "A red fox curled in a leather armchair, reading by lamplight, amber and walnut tones",
        "A fox on a library ladder, dust motes in slanted window light, sage and cream",
        "Overhead view of a fox asleep on open books, cool moonlight, indigo palette",
    ]
    prompts = finish_prompts("a fox in a library", found, 4, filler=[])
    assert prompts[:3] == found
    assert prompts[3].startswith("a fox in a library, ")


def test_painter_paints_at_the_asked_size_and_says_where(painter):
    image = painter.paint(
        "a harbour at dawn", steps=2, width=96, height=64, seed=1, model="tiny/sd"
    )
    assert _is_picture(image, (96, 64))
    assert image.info["device"] == "cpu" and image.info["model"] == "tiny/sd"
    again = painter.paint(
        "a harbour at dawn", steps=2, width=96, height=64, seed=1, model="tiny/sd"
    )
    assert again.tobytes() == image.tobytes()


def test_compose_lays_out_and_harmonises_images_of_any_size(painter):
    from PIL import Image

    tiles = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    out = painter.compose(tiles, steps=2, seed=0, model="tiny/sd", width=128, height=96)
    assert _is_picture(out, (128, 96))
    titled = painter.compose(tiles, title="three squares", steps=2, seed=0, model="tiny/sd")
    assert titled.width == 64 and titled.height > 48  # the first image's size, plus a band


def test_offline_pipeline_writes_prompts_images_and_composite(tmp_path, capsys):
    import pipeline
    from PIL import Image

    report = pipeline.run(
        "a fox reading in a library",
        tmp_path,
        n=3,
        prompt_model="tiny/qwen3",
        paint_model="tiny/sd",
        steps=2,
        width=64,
        height=64,
        seed=0,
        stages=pipeline.local_stages(),
    )
    assert [s.name for s in report] == ["prompts", "paint", "compose"]
    assert [s.calls for s in report] == [1, 3, 1]
    assert all(s.seconds > 0 for s in report)
    prompts = json.loads((tmp_path / "prompts.json").read_text())["prompts"]
    assert len(prompts) == 3
    for i in range(3):
        with Image.open(tmp_path / f"image-{i}.png") as image:
            assert _is_picture(image.convert("RGB"), (64, 64))
            assert image.text["prompt"] == prompts[i]  # provenance kept in the PNG
    with Image.open(tmp_path / "composite.png") as composite:
        assert composite.width == 64 and composite.height > 64
    stages = json.loads((tmp_path / "run.json").read_text())["stages"]
    assert [s["device"] for s in stages[1:]] == ["cpu", "cpu"]
    printed = capsys.readouterr().out
    for name in ("prompts", "paint", "compose", "total"):
        assert name in printed


def test_pipeline_cli_offline_defaults(tmp_path, monkeypatch):
    import pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # main() sets it; monkeypatch restores it
    assert (
        pipeline.main(["--offline", "--local", "--n", "2", "--seed", "3", "--out", str(tmp_path)])
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "composite.png",
        "image-0.png",
        "image-1.png",
        "prompts.json",
        "run.json",
    ]
    with pytest.raises(SystemExit):
        pipeline.parse_args(["--offline", "--paint-model", "Lykon/dreamshaper-8"])


def test_swap_model_list_offers_the_painter_and_prompt_writer_models():
    from model_list import choices, find

    painter_ids = [m.id for m in choices("Painter")]
    assert painter_ids[0] == "Lykon/dreamshaper-8"
    assert {"stabilityai/sdxl-turbo", "stable-diffusion-v1-5/stable-diffusion-v1-5"} <= set(
        painter_ids
    )
    writer_ids = [m.id for m in choices("write_prompts")]
    assert writer_ids == [f"Qwen/Qwen3-{s}" for s in ("0.6B", "1.7B", "4B", "8B")]
    assert all(m.description for m in choices("Painter") + choices("write_prompts"))
    assert find("stabilityai/sdxl-turbo").guidance == 0.0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_offline_pipeline_through_the_embedded_runtime(tmp_path):
    """`slipstream run` starts a local runtime; each stage runs in its endpoint's workers."""
    import subprocess

    from PIL import Image

    slipstream = Path(sys.executable).with_name("slipstream")
    out = tmp_path / "out"
    done = subprocess.run(
        [str(slipstream), "run", str(PIPELINE / "pipeline.py"), "--offline", "--n", "2"]
        + ["--seed", "0", "--width", "96", "--height", "64", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for i in range(2):
        with Image.open(out / f"image-{i}.png") as image:
            assert _is_picture(image.convert("RGB"), (96, 64))
    with Image.open(out / "composite.png") as composite:
        assert composite.width == 96 and composite.height > 64
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [(s["name"], s["calls"]) for s in stages] == [
        ("prompts", 1),
        ("paint", 2),
        ("compose", 1),
    ]
    for stage in stages:  # metered by the runtime, so run there, not in this process
        assert stage["busy_s"] > 0 and stage["cost_usd"] > 0 and stage["device"] == "cpu"
    assert "remote call(s)" in done.stderr
