"""Full-size random-weight models from the published configs (random-full/...), and their
narrow twins for CPUs (random-small/...): real classes, real sizes, no download."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image_pipeline"

# Published parameter counts: SD 1.5 (UNet, VAE, CLIP ViT-L/14 text) and Qwen3-0.6B.
SD15_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
QWEN3_06B_PARAMS = 596_049_920


@pytest.fixture(scope="module", autouse=True)
def _example_on_path():
    sys.path.insert(0, str(EXAMPLE))
    yield
    sys.path.remove(str(EXAMPLE))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    # Nothing here may reach a model hub: with it off, a download attempt fails at once.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("name", "scheduler"),
    [("dreamshaper-8", "DEISMultistepScheduler"), ("stable-diffusion-v1-5", "PNDMScheduler")],
)
def test_random_full_sd_has_the_published_size_and_classes(name, scheduler):
    from diffusers import StableDiffusionPipeline
    from loaders import load_image_pipeline

    # Built on the meta device: the real shapes without allocating 2 GB.
    pipe = load_image_pipeline(f"random-full/{name}", "meta", "float16")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert {k: _params(getattr(pipe, k)) for k in SD15_PARAMS} == SD15_PARAMS
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype
    assert str(pipe.unet.dtype) == "torch.float16"
    assert type(pipe.scheduler).__name__ == scheduler
    assert pipe.tokenizer.model_max_length == 77  # prompts padded as the real tokenizer does
    assert pipe.text_encoder.config.vocab_size == 49408


def test_random_full_qwen3_has_the_published_size_and_an_offline_tokenizer():
    from loaders import load_llm
    from transformers import Qwen3ForCausalLM

    model, tokenizer = load_llm("random-full/qwen3-0.6b", "meta", "bfloat16")
    assert isinstance(model, Qwen3ForCausalLM)
    assert _params(model) == QWEN3_06B_PARAMS
    assert str(model.dtype) == "torch.bfloat16"
    assert model.config.num_hidden_layers == 28 and model.config.vocab_size == 151936
    assert len(tokenizer) <= model.config.vocab_size  # every token id is inside the embedding
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )


def test_configs_name_their_source():
    from random_models import CONFIGS

    for folder in sorted(p for p in CONFIGS.iterdir() if p.is_dir()):
        source = json.loads((folder / "SOURCE.json").read_text())
        assert "/" in source["repo"]
        data_files = {
            str(p.relative_to(folder)) for p in folder.rglob("*.json") if p.name != "SOURCE.json"
        }
        assert set(source["files"]) == data_files, folder.name
        assert all(source["repo"] in url for url in source["files"].values())


def test_random_small_paints_and_writes_through_the_endpoint_code():
    from painter import Painter
    from prompts import write_prompts

    image = Painter.local().paint(
        "a lighthouse at dusk", steps=2, width=64, height=64, seed=0,
        model="random-small/dreamshaper-8",
    )  # fmt: skip
    assert image.size == (64, 64) and image.info["model"] == "random-small/dreamshaper-8"
    prompts = write_prompts.local(
        "a fox in a library", n=3, model="random-small/qwen3-0.6b", seed=0, max_new_tokens=4
    )
    assert len(prompts) == 3 and all("a fox in a library" in p for p in prompts)


def test_unknown_or_mismatched_random_ids_are_refused_with_what_exists():
    from loaders import is_cached, is_offline_model, load_image_pipeline, load_llm

    with pytest.raises(ValueError, match=r"unknown random model 'random-full/sdxl'.*dreamshaper-8"):
        load_image_pipeline("random-full/sdxl", "meta", "float16")
    with pytest.raises(ValueError, match="is a causal LM, not a diffusion model"):
        load_image_pipeline("random-full/qwen3-0.6b", "meta", "float16")
    with pytest.raises(ValueError, match="is a diffusion pipeline, not a llm model"):
        load_llm("random-full/dreamshaper-8", "meta", "bfloat16")
    # An explicit scheme: Hub ids stay Hub ids, random ids never look for a cache.
    assert is_offline_model("random-full/dreamshaper-8") and is_cached("random-small/qwen3-0.6b")
    assert not is_offline_model("Lykon/dreamshaper-8")


def test_pipeline_offline_flag_accepts_random_models_but_not_hub_ids(capsys):
    from pipeline import parse_args

    args = parse_args(["--offline", "--paint-model", "random-small/dreamshaper-8"])
    assert args.paint_model == "random-small/dreamshaper-8" and args.prompt_model == "tiny/qwen3"
    with pytest.raises(SystemExit):
        parse_args(["--offline", "--paint-model", "Lykon/dreamshaper-8"])
    assert "drop --paint-model" in capsys.readouterr().err
