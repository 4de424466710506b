"""The GPU catalog: names, memory and per-second prices, loaded from ``data/gpus.toml``.

Stdlib only, so the decorator, the runtime and the language server can import it cheaply.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

if TYPE_CHECKING:
    from .problems import Problem

__all__ = [
    "GPU",
    "GPUChoice",
    "GPURequest",
    "Catalog",
    "catalog",
    "cost",
    "load",
    "normalize",
    "TIERS",
    "MAX_GPU_COUNT",
]

TIERS = ("flex", "active", "modal")
# Fallback order when a GPU has no price for the asked tier.
_TIER_FALLBACK = {
    "flex": ("runpod_flex", "modal"),
    "active": ("runpod_active", "runpod_flex", "modal"),
    "modal": ("modal", "runpod_flex"),
}
MAX_GPU_COUNT = 8  # GPUs per worker: the most one machine offers on RunPod and Modal
_PRICE_FIELDS = ("runpod_flex", "runpod_active", "modal")
_COUNT_RE = re.compile(r"[0-9]+")
_COMMON = ("H100", "A100-80GB", "L40S", "RTX-4090", "L4")  # named in "unknown GPU" messages


def normalize(name: str) -> str:
    """The form names are compared in: lowercase, without spaces, underscores or hyphens."""
    return re.sub(r"[\s_\-]+", "", name).lower()


@dataclass(frozen=True)
class GPU:
    name: str
    vram_gb: float
    aliases: tuple[str, ...] = ()
    runpod_flex: float | None = None
    runpod_active: float | None = None
    modal: float | None = None
    runpod_pool: str | None = None
    # field -> "source description, date"; excluded from eq/hash (a dict is unhashable)
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def price_per_second(self, tier: str = "flex") -> float:
        """USD per second for one GPU; a missing tier falls back (active -> flex -> modal)."""
        if tier not in _TIER_FALLBACK:
            raise ValueError(f"unknown price tier {tier!r}; use one of {', '.join(TIERS)}")
        for attr in _TIER_FALLBACK[tier]:
            price = getattr(self, attr)
            if price is not None:
                return price
        raise ValueError(f"GPU {self.name} has no price in the catalog")  # pragma: no cover


@dataclass(frozen=True)
class GPUChoice:
    gpu: GPU
    count: int = 1

    @property
    def label(self) -> str:
        return self.gpu.name if self.count == 1 else f"{self.gpu.name}:{self.count}"

    @property
    def vram_gb(self) -> float:
        return self.gpu.vram_gb * self.count

    def price_per_second(self, tier: str = "flex") -> float:
        return self.count * self.gpu.price_per_second(tier)


@dataclass(frozen=True)
class GPURequest:
    """The GPUs an endpoint accepts, in fallback order; no choices means the CPU."""

    choices: tuple[GPUChoice, ...] = ()

    @property
    def is_cpu(self) -> bool:
        return not self.choices

    @property
    def primary(self) -> GPUChoice | None:
        return self.choices[0] if self.choices else None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.choices)

    @property
    def label(self) -> str:
        return "|".join(self.labels) if self.choices else "CPU"

    def price_per_second(self, tier: str = "flex") -> float:
        """Price of the primary choice (0.0 on the CPU)."""
        return self.choices[0].price_per_second(tier) if self.choices else 0.0


_LOOKALIKE = str.maketrans({"o": "0", "i": "1", "l": "1"})


class Catalog:
    def __init__(self, gpus: Iterable[GPU]) -> None:
        self.gpus: tuple[GPU, ...] = tuple(gpus)
        self._by_key: dict[str, GPU] = {}
        for gpu in self.gpus:
            for alias in (gpu.name, *gpu.aliases):
                key = normalize(alias)
                other = self._by_key.get(key)
                if other is not None and other is not gpu:
                    raise ValueError(f"GPU alias {alias!r} of {gpu.name} clashes with {other.name}")
                self._by_key[key] = gpu

    def __iter__(self) -> Iterator[GPU]:
        return iter(self.gpus)

    def __len__(self) -> int:
        return len(self.gpus)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gpus)

    def lookup(self, name: str) -> GPU | None:
        """The GPU whose name or alias equals ``name`` once normalized, else None."""
        if not isinstance(name, str):
            return None
        return self._by_key.get(normalize(name))

    def nearest(self, name: str, n: int = 3) -> list[str]:
        """Canonical names of the GPUs whose names look most like ``name``, best first."""
        key = normalize(str(name))
        if not key:
            return []
        # Letters typed for look-alike digits ("H1OO") are the commonest GPU-name typo.
        digits = key.translate(_LOOKALIKE)
        matches = [digits] if digits != key and digits in self._by_key else []
        matches += difflib.get_close_matches(
            key, list(self._by_key), n=len(self._by_key), cutoff=0.6
        )
        out: list[str] = []
        for m in matches:
            canonical = self._by_key[m].name
            if canonical not in out:
                out.append(canonical)
        return out[:n]

    def fitting(self, vram_needed_gb: float, tier: str = "flex") -> list[GPU]:
        """Every GPU with at least ``vram_needed_gb`` of memory, cheapest first."""
        fit = [g for g in self.gpus if g.vram_gb >= vram_needed_gb]
        return sorted(fit, key=lambda g: (g.price_per_second(tier), g.vram_gb))

    def cheaper_that_fit(self, vram_needed_gb: float, than: GPU, tier: str = "flex") -> list[GPU]:
        """GPUs cheaper than ``than`` with enough memory, cheapest first.

        Prices compare on ``tier`` ("flex": RunPod's flex price, or Modal's where RunPod has none).
        """
        limit = than.price_per_second(tier)
        return [g for g in self.fitting(vram_needed_gb, tier) if g.price_per_second(tier) < limit]

    def parse(self, value: Any) -> tuple[GPURequest | None, list[Problem]]:
        """Parse an ``@endpoint(gpu=...)`` value.

        None is the CPU (an empty request). "H100", "h100:2", ["H100", "A100"] and ("H100:2",)
        are GPU requests in fallback order. Returns (None, problems) when anything is wrong.
        """
        from .problems import Problem

        if value is None:
            return GPURequest(), []
        if isinstance(value, str):
            items: list[Any] = [value]
        elif isinstance(value, (list, tuple)):
            if not value:
                return None, [
                    Problem(
                        "bad-gpu",
                        "gpu is an empty list",
                        "gpu",
                        "Name at least one GPU, e.g. gpu=['H100', 'A100-80GB'], "
                        "or leave gpu=None to run on the CPU.",
                    )
                ]
            items = list(value)
        else:
            return None, [
                Problem(
                    "bad-gpu",
                    f"gpu must be a GPU name or a list of names, not {type(value).__name__} "
                    f"{value!r}",
                    "gpu",
                    "Write e.g. gpu='H100', gpu='H100:2' or gpu=['H100', 'A100-80GB'].",
                )
            ]

        problems: list[Problem] = []
        choices: list[GPUChoice] = []
        for item in items:
            choice, problem = self._parse_one(item, Problem)
            if problem is not None:
                problems.append(problem)
            elif choice is not None and choice in choices:
                problems.append(
                    Problem(
                        "bad-gpu",
                        f"{choice.label} is listed twice in gpu",
                        "gpu",
                        "Remove the repeated entry; each fallback is tried once.",
                        "warning",
                    )
                )
            elif choice is not None:
                choices.append(choice)
        if any(p.severity == "error" for p in problems):
            return None, problems
        return GPURequest(tuple(choices)), problems

    def _parse_one(self, item: Any, problem_cls: type[Problem]) -> tuple[GPUChoice | None, Any]:
        if not isinstance(item, str):
            return None, problem_cls(
                "bad-gpu",
                f"each gpu entry must be a string like 'H100' or 'H100:2', not "
                f"{type(item).__name__} {item!r}",
                "gpu",
                "Write GPU names as strings, e.g. gpu=['H100', 'A100-80GB'].",
            )
        name, sep, count_text = item.partition(":")
        name, count_text = name.strip(), count_text.strip()
        if not name:
            return None, problem_cls(
                "bad-gpu",
                f"gpu entry {item!r} has no GPU name",
                "gpu",
                "Write e.g. 'H100' or 'H100:2', or leave gpu=None to run on the CPU.",
            )
        count = 1
        if sep:
            if not _COUNT_RE.fullmatch(count_text) or not 1 <= int(count_text) <= MAX_GPU_COUNT:
                return None, problem_cls(
                    "bad-gpu-count",
                    f"bad GPU count in {item!r}: the part after ':' must be a whole number "
                    f"from 1 to {MAX_GPU_COUNT}",
                    "gpu",
                    f"Write e.g. '{name}:2' for two GPUs per worker, or '{name}' for one.",
                )
            count = int(count_text)
        gpu = self.lookup(name)
        if gpu is None and normalize(name) == "cpu":
            return None, problem_cls(
                "bad-gpu",
                f"gpu={item!r} is not a GPU",
                "gpu",
                "Leave gpu=None (the default) to run on the CPU.",
            )
        if gpu is None:
            return None, self._unknown(name, problem_cls)
        return GPUChoice(gpu, count), None

    def _unknown(self, name: str, problem_cls: type[Problem]) -> Problem:
        near = self.nearest(name)
        few = [n for n in _COMMON if self.lookup(n) is not None] or list(self.names[:5])
        hint = f"Did you mean {near[0]!r}?" if near else "Use a GPU name from the catalog."
        return problem_cls(
            "unknown-gpu",
            f"unknown GPU {name!r}; known GPUs include {', '.join(few)} "
            f"and {len(self.gpus) - len(few)} more",
            "gpu",
            hint,
        )


def _gpu_from_table(key: str, table: Mapping[str, Any], sources: Mapping[str, Any]) -> GPU:
    described: dict[str, str] = {}
    for fld, src in table.get("sources", {}).items():
        if src not in sources:
            raise ValueError(f"gpus.toml: {key}.{fld} cites unknown source {src!r}")
        described[fld] = f"{sources[src]['description']}, {sources[src]['date']}"
    return GPU(
        name=table.get("name", key),
        vram_gb=float(table["vram_gb"]),
        aliases=tuple(table.get("aliases", ())),
        runpod_flex=table.get("runpod_flex"),
        runpod_active=table.get("runpod_active"),
        modal=table.get("modal"),
        runpod_pool=table.get("runpod_pool"),
        sources=described,
    )


def load(data: Mapping[str, Any]) -> Catalog:
    """Build a Catalog from parsed gpus.toml data."""
    sources = data.get("sources", {})
    return Catalog(_gpu_from_table(k, t, sources) for k, t in data["gpus"].items())


@functools.cache
def catalog() -> Catalog:
    """The catalog shipped with Slipstream (parsed once per process)."""
    text = resources.files(__package__).joinpath("data").joinpath("gpus.toml").read_text("utf-8")
    return load(tomllib.loads(text))


def cost(
    gpu_label: str | None, seconds: float, tier: str = "flex", *, billed: bool = False
) -> float:
    """USD for ``seconds`` of busy time on ``gpu_label`` ("H100", "H100:2", None or "CPU").

    Metering charges exact busy seconds; ``billed=True`` rounds up to whole seconds the way the
    providers bill. A fallback label ("H100|A100-80GB") is priced at its first choice.
    """
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
    if gpu_label is None or normalize(gpu_label) == "cpu":
        return 0.0
    request, problems = catalog().parse(gpu_label.split("|"))
    if request is None:
        raise ValueError("; ".join(p.message for p in problems))
    if billed:
        seconds = math.ceil(seconds)
    return seconds * request.price_per_second(tier)
