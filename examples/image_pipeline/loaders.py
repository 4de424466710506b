"""Model loading by id, with no fallback between the schemes:

    tiny/sd, tiny/qwen3            tiny random models for CPU tests (tiny_models.py)
    random-full/<name>             real architectures at full size, random weights, offline
    random-small/<name>            the same configs with narrow layers (random_models.py)
    anything else                  a Hugging Face Hub id

A Hub id never falls back to a random model: if its weights cannot be fetched, loading raises
ModelUnavailableError saying so, and the caller decides (the pipeline's --offline flag).
torch, diffusers and transformers are imported inside the functions so that importing an
endpoint module stays cheap.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from random_models import is_random

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "TINY_LLM",
    "TINY_SD",
    "ModelUnavailableError",
    "default_dtype",
    "image_to_image",
    "is_cached",
    "is_offline_model",
    "is_tiny",
    "load_image_pipeline",
    "load_llm",
    "log",
    "resolve_device",
]

TINY_PREFIX = "tiny/"


class _TorchvisionFallbackNotice(logging.Filter):
    """Drops transformers' notice that an image processor falls back to its PIL version without
    torchvision: diffusers' imports trigger it in every worker, and the pipeline never uses
    those processors (feature_extractor=None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallbackNotice())

TINY_SD = "tiny/sd"
TINY_LLM = "tiny/qwen3"


class ModelUnavailableError(RuntimeError):
    """The weights of a real model id could not be loaded (no network, unknown id, ...)."""

    def __init__(self, model_id: str, cause: BaseException) -> None:
        reason = " ".join(str(cause).split()).rstrip(".")
        super().__init__(
            f"could not load {model_id!r} from the Hugging Face Hub or its cache: {reason}. "
            "Without network access, run the pipeline with --offline to use tiny in-process "
            f"models ({TINY_LLM!r}, {TINY_SD!r}), or name a full-size model with random weights "
            "(random-full/dreamshaper-8, random-full/qwen3-0.6b) instead."
        )
        self.model_id = model_id


def is_tiny(model_id: str) -> bool:
    return model_id.startswith(TINY_PREFIX)


def is_offline_model(model_id: str) -> bool:
    """Built in process with random weights (tiny/, random-full/, random-small/): no Hub."""
    return is_tiny(model_id) or is_random(model_id)


def resolve_device(device: str | None = None) -> str:
    """None or "auto": the GPU if torch sees one, else the CPU. "cuda" insists on a GPU."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was asked for, but torch {torch.__version__} sees no CUDA GPU "
            f"(built for CUDA {torch.version.cuda}); install a CUDA build of torch or use "
            "device='auto'"
        )
    return device


def default_dtype(device: str, kind: str) -> str:
    """fp16 for diffusion and bf16 for LLMs on a GPU; fp32 on the CPU, where halves are slow."""
    if not device.startswith("cuda"):
        return "float32"
    return "float16" if kind == "diffusion" else "bfloat16"


def load_image_pipeline(
    model_id: str, device: str, dtype: str, *, local_only: bool = False
) -> DiffusionPipeline:
    """A text-to-image pipeline on device; local_only=True never touches the network."""
    import torch

    torch_dtype = getattr(torch, dtype)
    if is_tiny(model_id):
        from tiny_models import build_tiny_sd

        _check_tiny(model_id, TINY_SD)
        _tiny_threads(device)
        return _cast(build_tiny_sd(), device, dtype)
    if is_random(model_id):
        from random_models import build_random_sd

        _tiny_threads(device)
        return build_random_sd(model_id, device, dtype)

    from diffusers import AutoPipelineForText2Image

    def load(variant: str | None) -> DiffusionPipeline:
        return AutoPipelineForText2Image.from_pretrained(
            model_id, torch_dtype=torch_dtype, variant=variant, local_files_only=local_only
        )

    try:
        try:
            pipe = load("fp16" if dtype == "float16" else None)
        except ValueError as e:  # this repository has no fp16 files: take the full ones
            if "variant" not in str(e):
                raise
            pipe = load(None)
    except OSError as e:
        raise ModelUnavailableError(model_id, e) from e
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def image_to_image(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """The img2img pipeline over the same modules (no copy of the weights)."""
    from diffusers import AutoPipelineForImage2Image

    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    return img2img


def load_llm(
    model_id: str, device: str, dtype: str, *, local_only: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer on device, in eval mode."""
    import torch

    torch_dtype = getattr(torch, dtype)
    if is_tiny(model_id):
        from tiny_models import build_tiny_qwen3

        _check_tiny(model_id, TINY_LLM)
        _tiny_threads(device)
        model, tokenizer = build_tiny_qwen3()
        return _cast(model, device, dtype), tokenizer
    if is_random(model_id):
        from random_models import build_random_llm

        _tiny_threads(device)
        return build_random_llm(model_id, device, dtype)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, dtype=torch_dtype, local_files_only=local_only
        )
    except OSError as e:
        raise ModelUnavailableError(model_id, e) from e
    return model.to(device).eval(), tokenizer


def is_cached(model_id: str) -> bool:
    """Whether a Hub model's index is in the local cache (no network). Random and tiny ids
    need no cache: they always are."""
    if is_offline_model(model_id):
        return True
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(model_id, name), str)
        for name in ("model_index.json", "config.json")
    )


def _cast(obj: Any, device: str, dtype: str) -> Any:
    # Tiny models are built in fp32; casting to the same dtype only earns a warning.
    obj = obj.to(device)
    if dtype != "float32":
        import torch

        obj = obj.to(getattr(torch, dtype))
    return obj


def _check_tiny(model_id: str, expected: str) -> None:
    if model_id != expected:
        raise ValueError(f"unknown tiny model {model_id!r}; this loader builds {expected!r}")


def _tiny_threads(device: str) -> None:
    # Small models run in several CPU workers at once; one thread each avoids oversubscription.
    if device == "cpu":
        import torch

        torch.set_num_threads(1)


def log(message: str) -> None:
    """Worker-side notes go to stderr (the runtime forwards worker logs)."""
    print(message, file=sys.stderr, flush=True)
