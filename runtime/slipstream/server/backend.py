"""What a worker backend is: where a pool's workers run, and how one is started.

The pool logic (queue, dispatch, scaling, timeouts, crashes, reloads; pools.py) is the same for
every backend. A backend answers three questions for it: which accelerators there are
(`inventory`), where an endpoint's workers go (`placement`, a `Placement`), and how to start
one worker there (`create`). Two implement it: `pools.LocalBackend` (processes on this
machine) and `ray_backend.RayBackend` (Ray actors on a cluster). To add one, implement
`Backend` and pass it to `Runtime(backend=...)` (cli.py picks one from `serve --backend`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..spec.endpoint_spec import EndpointSpec
    from .gpus import Device
    from .pools import Pool, WorkerHandle

__all__ = ["Backend", "Placement", "GpuFallbacks"]

# the later GPUs of gpu=[...] a backend has, as (label, device slots): where a call that ran out
# of CUDA memory moves next (Pool.fallback_pool)
GpuFallbacks = list[tuple[str, list[tuple[int, ...]]]]


@dataclass(frozen=True)
class Placement:
    """Where an endpoint's workers run, decided once per deploy by the backend.

    `slots`: the device index groups a local pool's workers take turns on (one tuple per
    worker slot; empty for the CPU, and on a cluster, whose scheduler picks the devices).
    `gpu`/`count`: the GPU (catalog name) and how many each worker gets (None/0: the CPU);
    `ray_type`: the accelerator type a cluster node must have. `note`: the endpoint runs on
    other hardware than it asked for (a fallback), said in the deploy reply; `unavailable`:
    why it cannot run here at all (its calls are refused with this text)."""

    slots: list[tuple[int, ...]] = field(default_factory=list)
    note: str = ""
    unavailable: str = ""
    gpu: str | None = None
    count: int = 0
    ray_type: str | None = None

    @property
    def label(self) -> str:
        """The GPU as the catalog prices it ("H100", "H100:2", "CPU"): a cluster's cost basis."""
        if not self.gpu:
            return "CPU"
        return self.gpu if self.count == 1 else f"{self.gpu}:{self.count}"


class Backend(Protocol):
    """Starts a pool's workers somewhere. Runtime and Pool use nothing else of a backend."""

    name: str  # "local" | "ray": shown in the health and the CLI's banner
    forks: bool  # workers are this machine's processes: an environment's fork server can start them

    def inventory(self) -> list[Device]:
        """The accelerators workers can get (the health's `gpus`); a cluster's nodes come and go,
        so the runtime asks again on every health check."""
        ...

    def cluster(self) -> dict[str, Any] | None:
        """The health's `cluster` section (nodes, GPU types, metering), or None on one machine."""
        ...

    def placement(self, spec: EndpointSpec, gpu_fallback: bool = False) -> Placement:
        """Where the endpoint's workers go, or why they cannot run here (`unavailable`).
        gpu_fallback: run on whatever there is rather than refuse (serve --gpu-fallback)."""
        ...

    def gpu_fallbacks(self, spec: EndpointSpec) -> GpuFallbacks:
        """The later choices of gpu=[...] this backend has, after the one placement picked."""
        ...

    def create(self, pool: Pool, env: dict[str, str], devices: tuple[int, ...]) -> WorkerHandle:
        """A handle for one new worker of `pool` (not started yet: the pool calls start())."""
        ...
