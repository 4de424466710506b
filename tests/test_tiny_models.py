"""The tiny offline models: real library classes, random weights, fast on a CPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image_pipeline"


@pytest.fixture(scope="module", autouse=True)
def _example_on_path():
    sys.path.insert(0, str(EXAMPLE))
    yield
    sys.path.remove(str(EXAMPLE))


@pytest.fixture(scope="module")
def sd():
    import torch
    from tiny_models import build_tiny_sd

    torch.set_num_threads(1)
    return build_tiny_sd()


def _paint(pipe, seed: int = 0):
    import torch

    return pipe(
        "a lighthouse at dusk",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(seed),
    ).images[0]


def test_tiny_sd_paints_a_64px_rgb_image_in_two_steps_quickly(sd):
    import numpy as np

    _paint(sd)  # the first call sets things up
    started = time.perf_counter()
    image = _paint(sd)
    elapsed = time.perf_counter() - started
    assert image.size == (64, 64)
    assert image.mode == "RGB"
    assert np.asarray(image).std() > 1  # a picture, not a flat fill
    assert elapsed < 2.0, f"2 steps at 64x64 took {elapsed:.2f} s"


def test_tiny_sd_is_deterministic_for_a_seed(sd):
    import numpy as np

    assert np.array_equal(np.asarray(_paint(sd, seed=3)), np.asarray(_paint(sd, seed=3)))
    assert not np.array_equal(np.asarray(_paint(sd, seed=3)), np.asarray(_paint(sd, seed=4)))


def test_tiny_sd_uses_the_real_stable_diffusion_classes(sd):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    assert isinstance(sd, StableDiffusionPipeline)
    assert isinstance(sd.text_encoder, CLIPTextModel)
    assert isinstance(sd.tokenizer, CLIPTokenizer)
    assert sd.unet.config.block_out_channels == (32, 64) or list(
        sd.unet.config.block_out_channels
    ) == [32, 64]
    assert sd.text_encoder.config.hidden_size == 32
    assert sd.text_encoder.config.num_hidden_layers == 5
    assert sd.safety_checker is None
    assert len(sd.tokenizer) < 100


def test_img2img_shares_the_text_to_image_weights(sd):
    import torch
    from loaders import image_to_image

    img2img = image_to_image(sd)
    assert img2img.unet is sd.unet and img2img.vae is sd.vae
    out = img2img(
        "a harbour",
        image=_paint(sd).resize((96, 64)),
        strength=0.5,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (96, 64)


def test_tiny_qwen3_generates_tokens_through_its_chat_template():
    import torch
    from tiny_models import build_tiny_qwen3
    from transformers import Qwen3ForCausalLM

    model, tokenizer = build_tiny_qwen3(seed=0)
    assert isinstance(model, Qwen3ForCausalLM)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a lighthouse at dusk"}],
        add_generation_prompt=True,
        enable_thinking=False,
        return_dict=True,
        return_tensors="pt",
    )
    prompt_len = inputs["input_ids"].shape[1]

    def sample() -> list[int]:
        torch.manual_seed(1)
        out = model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=True)
        return out[0, prompt_len:].tolist()

    tokens = sample()
    assert len(tokens) == 12
    assert tokens == sample()
    assert tokenizer.decode(tokens)  # byte-level BPE decodes any ids


def test_tiny_ids_select_tiny_models_and_unknown_tiny_ids_are_refused():
    from loaders import TINY_LLM, TINY_SD, is_tiny, load_image_pipeline, load_llm

    assert is_tiny(TINY_SD) and is_tiny(TINY_LLM)
    assert not is_tiny("Lykon/dreamshaper-8") and not is_tiny("Qwen/Qwen3-0.6B")
    pipe = load_image_pipeline(TINY_SD, "cpu", "float32")
    assert pipe.unet.config.cross_attention_dim == 32
    model, _ = load_llm(TINY_LLM, "cpu", "float32")
    assert model.config.hidden_size == 32
    with pytest.raises(ValueError, match="unknown tiny model"):
        load_image_pipeline("tiny/flux", "cpu", "float32")


def test_defaults_are_the_real_models():
    import painter
    import pipeline
    import prompts

    assert painter.DEFAULT_MODEL == "Lykon/dreamshaper-8"
    assert prompts.DEFAULT_MODEL == "Qwen/Qwen3-0.6B"
    args = pipeline.parse_args([])
    assert (args.prompt_model, args.paint_model) == ("Qwen/Qwen3-0.6B", "Lykon/dreamshaper-8")
    assert (args.steps, args.width, args.height) == (25, 1024, 768)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_real_id_without_the_hub_raises_a_clear_error_instead_of_going_tiny(tmp_path):
    # A fresh interpreter, so HF_HUB_OFFLINE is read at import and the failure is immediate;
    # an empty cache, so weights cached on this machine cannot make the load succeed.
    code = textwrap.dedent(
        """
        import sys
        from loaders import ModelUnavailableError, load_image_pipeline, load_llm
        for load, model_id in ((load_image_pipeline, "Lykon/dreamshaper-8"),
                               (load_llm, "Qwen/Qwen3-0.6B")):
            try:
                load(model_id, "cpu", "float32")
            except ModelUnavailableError as e:
                print("ERROR", e)
            else:
                sys.exit(f"{model_id} loaded without the hub")
        """
    )
    env = {**_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2
    for line, model_id in zip(errors, ("Lykon/dreamshaper-8", "Qwen/Qwen3-0.6B"), strict=True):
        assert model_id in line and "--offline" in line


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
