"""Model sizes and GPU-memory estimates, from ``data/models.toml`` or the size in a model id.

Estimate: params x bytes per dtype x 1.2 (activations, CUDA context, fragmentation), plus the KV
cache for LLMs whose architecture is known. 1 GB = 1e9 bytes throughout. Stdlib only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

if TYPE_CHECKING:
    from .catalog import GPUChoice

__all__ = [
    "ModelInfo",
    "Estimate",
    "BYTES_PER_DTYPE",
    "OVERHEAD",
    "DEFAULT_DTYPE",
    "normalize_dtype",
    "lookup",
    "known_models",
    "params_from_id",
    "estimate",
    "alternatives",
    "looks_like_model_id",
    "fits",
]

BYTES_PER_DTYPE = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
OVERHEAD = 1.2
DEFAULT_DTYPE = "bf16"
_DTYPE_ALIASES = {
    "float32": "fp32", "float": "fp32", "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16",
    "8bit": "int8", "q8": "int8",
    "4bit": "int4", "q4": "int4", "nf4": "int4",
}  # fmt: skip

# A size in an id: "4B", "0.6b", "350M", "8x7B"; not preceded by a letter ("A3B" in
# "Qwen3-30B-A3B" is the active size, not the total) nor followed by one ("4bit").
_SIZE_RE = re.compile(r"(?<![A-Za-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z])", re.IGNORECASE)
_ID_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_MODEL_ID_RE = re.compile(rf"({_ID_PART})/({_ID_PART})")
# "org/name" strings in code that are not model ids.
_NOT_ORGS = {"text", "image", "audio", "video", "application", "multipart", "font", "message"}
_FILE_EXT_RE = re.compile(
    r"\.(py|pyi|txt|md|json|jsonl|ya?ml|toml|cfg|ini|csv|png|jpe?g|gif|webp|bin|pt|pth|ckpt"
    r"|safetensors|onnx|gguf|html?|js|ts|sh|log)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    kind: str  # "llm" | "text-to-image"
    params_b: float
    dtype: str
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    source: str = ""  # "source description, date"


@dataclass(frozen=True)
class Estimate:
    model_id: str
    params_b: float
    dtype: str
    vram_gb: float
    basis: str  # "known" (from models.toml) | "from-id" (size parsed from the id)
    kind: str | None
    detail: str


@functools.cache
def _data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data").joinpath("models.toml").read_text("utf-8")
    return tomllib.loads(text)


@functools.cache
def known_models() -> tuple[ModelInfo, ...]:
    data = _data()
    sources = data.get("sources", {})
    out = []
    for m in data.get("model", []):
        src = sources[m["source"]]
        out.append(
            ModelInfo(
                id=m["id"],
                kind=m["kind"],
                params_b=float(m["params_b"]),
                dtype=normalize_dtype(m["dtype"]),
                layers=m.get("layers"),
                kv_heads=m.get("kv_heads"),
                head_dim=m.get("head_dim"),
                source=f"{src['description']}, {src['date']}",
            )
        )
    return tuple(out)


@functools.cache
def _index() -> tuple[dict[str, ModelInfo], dict[str, ModelInfo]]:
    by_id: dict[str, ModelInfo] = {}
    by_repo: dict[str, ModelInfo] = {}
    for info in known_models():
        by_id[info.id.lower()] = info
        by_repo.setdefault(info.id.rsplit("/", 1)[-1].lower(), info)
    return by_id, by_repo


def normalize_dtype(dtype: str) -> str:
    """Canonical dtype name: "bfloat16" -> "bf16", "torch.float16" -> "fp16", "4bit" -> "int4"."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in BYTES_PER_DTYPE:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(BYTES_PER_DTYPE)}")
    return key


def lookup(model_id: str) -> ModelInfo | None:
    """The known model with this id (any case), or whose repo name equals the last part of it."""
    if not isinstance(model_id, str) or not model_id.strip():
        return None
    key = model_id.strip().rstrip("/").lower()
    by_id, by_repo = _index()
    return by_id.get(key) or by_repo.get(key.rsplit("/", 1)[-1])


def params_from_id(model_id: str) -> float | None:
    """Billions of parameters written in the id ("Qwen3-4B" -> 4.0, "350M" -> 0.35), or None.

    With several sizes in one id the largest wins ("Qwen2.5-7B-Instruct-1M" -> 7.0); "8x7B"
    multiplies, an upper bound for mixtures of experts.
    """
    sizes = []
    for times, number, unit in _SIZE_RE.findall(model_id or ""):
        value = float(number) * (int(times) if times else 1)
        sizes.append(value / 1000 if unit.lower() == "m" else value)
    return max(sizes) if sizes else None


def estimate(model_id: str, dtype: str | None = None, tokens: int = 4096) -> Estimate | None:
    """Memory needed to serve ``model_id``; None when it is unknown and its id names no size.

    ``tokens`` sizes the KV cache of known LLMs (context length x concurrent sequences).
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, not {tokens}")
    info = lookup(model_id)
    if info is not None:
        params, kind, basis = info.params_b, info.kind, "known"
        dt = normalize_dtype(dtype or info.dtype)
    else:
        found = params_from_id(model_id)
        if found is None:
            return None
        params, kind, basis = found, None, "from-id"
        dt = normalize_dtype(dtype or DEFAULT_DTYPE)
    nbytes = BYTES_PER_DTYPE[dt]
    weights_gb = params * nbytes * OVERHEAD
    detail = f"{params:.2f} B params x {nbytes:g} bytes ({dt}) x {OVERHEAD:g}"
    kv_gb = 0.0
    if info is not None and info.layers and info.kv_heads and info.head_dim:
        # Quantized weights still keep the KV cache in 16-bit, so never count less than 2 bytes.
        kv_bytes = max(nbytes, 2.0)
        kv_gb = 2 * info.layers * info.kv_heads * info.head_dim * kv_bytes * tokens / 1e9
        detail += f" + KV cache {kv_gb:.2f} GB for {tokens} tokens"
    elif basis == "from-id":
        detail = f"~{detail} (size read from the id; KV cache not included)"
    return Estimate(
        model_id=model_id,
        params_b=params,
        dtype=dt,
        vram_gb=weights_gb + kv_gb,
        basis=basis,
        kind=kind,
        detail=detail,
    )


def alternatives(kind: str) -> list[tuple[str, str]]:
    """Curated (model id, description) pairs the editor offers to swap a ``kind`` model for."""
    return [(a["id"], a["description"]) for a in _data().get("swap", {}).get(kind, [])]


def looks_like_model_id(s: str) -> bool:
    """Whether a string literal in code is shaped like a Hugging Face id ("org/name").

    Errs towards False: a missed lens is cheaper than one on "image/png" or "src/main.py".
    """
    if not isinstance(s, str):
        return False
    m = _MODEL_ID_RE.fullmatch(s)
    if m is None:
        return False
    if lookup(s) is not None:
        return True
    org, name = m.groups()
    if org.lower() in _NOT_ORGS or _FILE_EXT_RE.search(name):
        return False
    if "--" in s or ".." in s or not re.search(r"[A-Za-z]", org + name):
        return False
    # Plain lowercase words ("and/or", "src/utils") are paths or prose, not model ids.
    return bool(re.search(r"[0-9A-Z._-]", name))


def fits(estimate: Estimate, gpu_choice: GPUChoice) -> bool:
    """Whether the estimated memory fits in the choice's total memory (all its GPUs)."""
    return estimate.vram_gb <= gpu_choice.vram_gb
