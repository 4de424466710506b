"""What the SDK says about a found endpoint: its validated spec, GPU, price and model sizes.

The rules live in `slipstream.spec.endpoint_spec`, `slipstream.spec.catalog` and `slipstream.spec.modelsize` (one truth
for the decorator, the runtime and the editor); this module only applies them to the
arguments the finder resolved, once per endpoint per document version.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .finder import UNRESOLVED, Endpoint

if TYPE_CHECKING:
    from slipstream.spec.catalog import GPUChoice, GPURequest
    from slipstream.spec.endpoint_spec import EndpointSpec, Problem
    from slipstream.spec.modelsize import Estimate

__all__ = ["EndpointFacts", "display_gpu", "facts_for", "is_model_id"]


@dataclass
class EndpointFacts:
    endpoint: Endpoint
    spec: EndpointSpec | None
    problems: list[Problem]
    request: GPURequest | None  # None when the gpu value is invalid or not a literal
    gpu_label: str  # catalog label ("H100", "H100:2"), "CPU", or the code when unknown
    estimates: list[Estimate] = field(default_factory=list)

    @property
    def primary(self) -> GPUChoice | None:
        return self.request.primary if self.request is not None else None

    @property
    def is_cpu(self) -> bool:
        return self.request is not None and self.request.is_cpu

    @property
    def price_per_second(self) -> float | None:
        """RunPod flex price of the primary choice per worker; 0 on the CPU; None if unknown."""
        if self.request is None:
            return None
        return self.request.price_per_second("flex")

    @property
    def model_vram_gb(self) -> float | None:
        """The largest model's estimated memory need, when any model is recognised."""
        return max((e.vram_gb for e in self.estimates), default=None)

    def example_for(self, method: str | None) -> dict[str, Any] | None:
        example = self.endpoint.value("example")
        if not isinstance(example, dict):
            return None
        if self.endpoint.kind == "class":
            inner = example.get(method) if method else None
            return dict(inner) if isinstance(inner, dict) else None
        return dict(example)


def display_gpu(label: str) -> str:
    """ "H100:2" -> "2× H100"; other labels unchanged."""
    name, sep, count = label.partition(":")
    return f"{count}× {name}" if sep and count.isdigit() else label


@functools.lru_cache(maxsize=4096)
def is_model_id(text: str) -> bool:
    from slipstream.spec.modelsize import looks_like_model_id

    return looks_like_model_id(text)


def facts_for(ep: Endpoint) -> EndpointFacts:
    """Validate an endpoint's decorator arguments with the SDK's own rules (cached on `ep`)."""
    cached = ep.cache.get("facts")
    if cached is not None:
        return cached
    from slipstream.spec import modelsize
    from slipstream.spec.catalog import catalog
    from slipstream.spec.endpoint_spec import validate

    spec, problems = validate(ep.symbol, **ep.kwargs())
    gpu_arg = ep.args.get("gpu")
    request: GPURequest | None
    if gpu_arg is None:
        request, label = catalog().parse(None)[0], "CPU"
    elif gpu_arg.value is UNRESOLVED:
        request, label = None, gpu_arg.source
    else:
        request, _ = catalog().parse(gpu_arg.value)
        label = request.label if request is not None else gpu_arg.source
    if request is not None and not request.is_cpu:
        label = request.labels[0]
    estimates = []
    seen: set[str] = set()
    for ref in ep.models:
        if ref.model_id in seen:
            continue
        seen.add(ref.model_id)
        est = modelsize.estimate(ref.model_id)
        if est is not None:
            estimates.append(est)
    out = EndpointFacts(ep, spec, problems, request, label, estimates)
    ep.cache["facts"] = out
    return out
