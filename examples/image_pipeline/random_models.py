"""Real-architecture models with random weights, from the published configs, with no download.

    random-full/dreamshaper-8           Lykon/dreamshaper-8 at full size (UNet ~860M parameters)
    random-full/stable-diffusion-v1-5   SD 1.5, the same size (a second model to swap to)
    random-full/qwen3-0.6b              Qwen/Qwen3-0.6B at full size
    random-small/<same names>           the same configs with narrow layers, for CPU dry runs

The configs are data: random_configs/<name>/ mirrors the Hub repository's config files, and
SOURCE.json there says which repository and file each comes from. The models are built through
the same classes the Hub ids load (StableDiffusionPipeline with UNet2DConditionModel,
AutoencoderKL, CLIPTextModel and the repository's scheduler; Qwen3ForCausalLM with its
generation config), so a call runs the same code at the same size: GPU timings mean something,
the pictures and text do not. No tokenizer is downloaded either: a CLIPTokenizer and a Qwen-style
byte-level BPE tokenizer (ChatML template) are built in process from a small vocabulary. CLIP
prompts are still padded to 77 tokens, so the text encoder does the real amount of work; the
Qwen prompt has more, shorter tokens than the real tokenizer would give it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CONFIGS",
    "RANDOM_FULL",
    "RANDOM_SMALL",
    "build_random_llm",
    "build_random_sd",
    "is_random",
    "known_models",
]

CONFIGS = Path(__file__).with_name("random_configs")
RANDOM_FULL = "random-full/"
RANDOM_SMALL = "random-small/"

# random-small: the full configs with these fields replaced (narrow layers, same structure).
_SMALL = {
    "unet": {
        "block_out_channels": [32, 32, 64, 64],
        "layers_per_block": 1,
        "cross_attention_dim": 32,
    },
    "vae": {"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1},
    "text_encoder": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": 32,
    },
    "llm": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
    },
}


def is_random(model_id: str) -> bool:
    return model_id.startswith((RANDOM_FULL, RANDOM_SMALL))


def known_models() -> list[str]:
    """Every random model id, full and small."""
    names = sorted(d.name for d in CONFIGS.iterdir() if (d / "SOURCE.json").exists())
    return [prefix + n for prefix in (RANDOM_FULL, RANDOM_SMALL) for n in names]


def _folder(model_id: str, kind: str) -> tuple[Path, bool]:
    """The config folder of a random model id and whether it is the small variant."""
    small = model_id.startswith(RANDOM_SMALL)
    name = model_id.removeprefix(RANDOM_SMALL if small else RANDOM_FULL)
    folder = CONFIGS / name
    marker = "model_index.json" if kind == "diffusion" else "config.json"
    if not is_random(model_id) or "/" in name or not (folder / "SOURCE.json").exists():
        raise ValueError(
            f"unknown random model {model_id!r}; known: {', '.join(known_models())} "
            f"(configs in {CONFIGS})"
        )
    if not (folder / marker).exists():
        other = "a causal LM" if kind == "diffusion" else "a diffusion pipeline"
        raise ValueError(f"{model_id!r} is {other}, not a {kind} model")
    return folder, small


def _config(path: Path, small_key: str | None) -> dict[str, Any]:
    config = json.loads(path.read_text("utf-8"))
    if small_key:
        config.update(_SMALL[small_key])
    return config


def _clip_tokenizer(folder: Path) -> Any:
    """A CLIPTokenizer with the repository's settings (77 positions) over a small vocabulary."""
    import tempfile

    from tiny_models import _write_clip_vocab
    from transformers import CLIPTokenizer

    settings = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text("utf-8"))
    with tempfile.TemporaryDirectory(prefix="random-clip-") as tmp:
        _write_clip_vocab(Path(tmp), settings["bos_token"], settings["eos_token"])
        return CLIPTokenizer.from_pretrained(
            tmp,
            model_max_length=settings["model_max_length"],
            bos_token=settings["bos_token"],
            eos_token=settings["eos_token"],
            pad_token=settings["pad_token"],
            unk_token=settings["unk_token"],
        )


def build_random_sd(
    model_id: str, device: str = "cpu", dtype: str = "float32", seed: int = 0
) -> StableDiffusionPipeline:
    """The StableDiffusionPipeline of a random-full/ or random-small/ id, on device in dtype.
    The modules are built on the device itself (no multi-GB copy from the CPU)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tiny_models import _sd_pipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    folder, small = _folder(model_id, "diffusion")
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    if index["_class_name"] != "StableDiffusionPipeline":
        raise ValueError(f"{model_id!r}: only StableDiffusionPipeline configs are built here")
    tokenizer = _clip_tokenizer(folder)
    scheduler_cls = getattr(diffusers, index["scheduler"][1])
    scheduler = scheduler_cls.from_config(scheduler_cls.load_config(str(folder / "scheduler")))
    torch.manual_seed(seed)
    # Built in place, in the dtype (as from_pretrained(torch_dtype=...) loads them).
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(
                _config(folder / "unet" / "config.json", "unet" if small else None)
            )
            vae = AutoencoderKL.from_config(
                _config(folder / "vae" / "config.json", "vae" if small else None)
            )
            text_config = _config(
                folder / "text_encoder" / "config.json", "text_encoder" if small else None
            )
            text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    finally:
        torch.set_default_dtype(previous)
    for m in (unet, vae, text_encoder):
        m.eval()
    return _sd_pipeline(vae, text_encoder, tokenizer, unet, scheduler)


def build_random_llm(
    model_id: str, device: str = "cpu", dtype: str = "float32", seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The Qwen3ForCausalLM of a random-full/ or random-small/ id (eval mode, on device in
    dtype) and an offline Qwen-style tokenizer whose ids are all inside the model's vocabulary."""
    import torch
    from tiny_models import _bpe_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder, small = _folder(model_id, "llm")
    fields = _config(folder / "config.json", "llm" if small else None)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    tokenizer = _bpe_tokenizer(vocab_size=1000)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.eval()
    generation = GenerationConfig.from_pretrained(str(folder))
    # The published special-token ids belong to the published tokenizer; use this one's.
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = generation.bos_token_id = tokenizer.pad_token_id
    model.generation_config = generation
    return model, tokenizer
