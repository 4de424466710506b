"""One GPU allocator per runtime: which worker holds which GPU, and how much of its memory.

Every worker of every pool, variant and project of a local runtime takes its GPUs here before
it starts and gives them back when it stops (docs/gpus.md). The rules, in order:

1. A worker needs `count` GPUs of its placement (the GPU type it asked for) and `gb` of memory
   on each: the endpoint's `gpu_memory=`, else the estimate of the models its code names
   (spec/modelsize.py), else the whole GPU (an unknown endpoint shares with nobody), except on a
   box with one GPU, where an unknown endpoint reserves nothing and shares it as before.
2. Spread first: it goes to the GPUs with the fewest holders (then the least memory reserved)
   that have `gb` free. It shares a GPU only when the GPU's free memory fits it; nothing is
   ever overcommitted.
3. When nothing fits and the worker is for a queued call, idle workers (warm, no call) of other
   endpoints are stopped to make room, the least recently used first; if that is not enough the
   call waits in its queue, saying which workers hold which GPUs (`waiting`).
4. A worker that can never fit (more GPUs, or more memory, than the box has) is refused at once
   with the box's GPUs (`never_fits`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .gpus import Device

__all__ = ["GpuAllocator", "Hold", "memory_need"]


@dataclass
class Hold:
    """GPUs one worker holds: `gb` reserved on each of `devices`."""

    project: str
    endpoint: str
    devices: tuple[int, ...]
    gb: float
    worker: str = ""
    # stops the worker if it is idle (warm, nothing in flight) and says whether it did
    evict: Callable[[], bool] | None = None
    idle_since: Callable[[], float | None] | None = None  # monotonic time, None when busy
    owner: Any = None  # the pool


def memory_need(
    gpu_memory: float | None, models: list[str], count: int, gpu_gb: float, box_gpus: int
) -> tuple[float, str]:
    """(GB per GPU one worker of the endpoint reserves, how that was decided)."""
    if gpu_memory:
        return float(gpu_memory), "gpu_memory="
    from ..spec import modelsize

    total = 0.0
    named = []
    for model_id in models:
        est = modelsize.estimate(model_id)
        if est is not None:
            total += est.vram_gb
            named.append(model_id)
    if named:
        each = round(total / max(count, 1), 2)
        if gpu_gb and each > gpu_gb:  # an estimate never refuses: it may load quantized
            return gpu_gb, f"estimate of {', '.join(named)} ({each:g} GB), capped at the whole GPU"
        return each, f"estimate of {', '.join(named)}"
    if box_gpus <= 1:
        return 0.0, "unknown (one GPU: shared, nothing reserved)"
    return gpu_gb, "unknown (the whole GPU)"


class GpuAllocator:
    def __init__(self, devices: list[Device]) -> None:
        self.devices = {d.index: d for d in devices}
        self.holds: list[Hold] = []
        self._waiters: list[Callable[[], None]] = []

    # --- facts ------------------------------------------------------------------------
    def total(self, index: int) -> float:
        d = self.devices.get(index)
        return d.memory_gb if d is not None else 0.0

    def reserved(self, index: int) -> float:
        return sum(h.gb for h in self.holds if index in h.devices)

    def free(self, index: int) -> float:
        return self.total(index) - self.reserved(index)

    def _fits(self, index: int, gb: float) -> bool:
        if self.total(index) <= 0:  # memory unknown: shared by count only
            return True
        return self.free(index) + 1e-6 >= gb

    def box(self) -> str:
        return (
            ", ".join(
                f"GPU {d.index} {d.canonical or d.name} ({d.memory_gb:g} GB)"
                for d in self.devices.values()
            )
            or "no GPU"
        )

    def never_fits(self, candidates: list[int], count: int, gb: float) -> str:
        """Why a worker needing `count` of `candidates` with `gb` each can never run here."""
        if count > len(candidates):
            return f"it needs {count} GPUs and this runtime has {len(candidates)} of that kind: {self.box()}"
        big = [i for i in candidates if self.total(i) <= 0 or self.total(i) + 1e-6 >= gb]
        if len(big) < count:
            return f"it needs {gb:g} GB on each of {count} GPU(s) and this runtime has {self.box()}"
        return ""

    def holders_text(self, candidates: list[int] | None = None) -> str:
        """Who holds the GPUs: 'GPU 0 (H100, 60/80 GB): proj/llm worker llm-3 (60 GB); ...'."""
        parts = []
        for i in candidates if candidates is not None else list(self.devices):
            held = [h for h in self.holds if i in h.devices]
            who = ", ".join(
                f"{h.project}/{h.endpoint} worker {h.worker or '(starting)'} ({h.gb:g} GB)"
                for h in held
            )
            parts.append(
                f"GPU {i} ({self.reserved(i):g}/{self.total(i):g} GB reserved): {who or 'free'}"
            )
        return "; ".join(parts)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each GPU with who holds it (the health's `gpu_use`, /metrics, `slipstream status`)."""
        return [
            {
                "index": i,
                "name": d.canonical or d.name,
                "memory_gb": d.memory_gb,
                "reserved_gb": round(self.reserved(i), 2),
                "holders": [
                    {"project": h.project, "endpoint": h.endpoint, "worker": h.worker, "gb": h.gb}
                    for h in self.holds
                    if i in h.devices
                ],
            }
            for i, d in self.devices.items()
        ]

    # --- taking and giving back ---------------------------------------------------------
    def _pick(self, candidates: list[int], count: int, gb: float) -> tuple[int, ...] | None:
        fit = [i for i in candidates if self._fits(i, gb)]
        if len(fit) < count:
            return None

        def load(i: int) -> tuple[int, float, int]:
            return (sum(1 for h in self.holds if i in h.devices), self.reserved(i), i)

        return tuple(sorted(sorted(fit, key=load)[:count]))

    def take(
        self, candidates: list[int], count: int, gb: float, hold: Hold, *, evict: bool = False
    ) -> Hold | None:
        """Reserve GPUs for one worker (hold's devices are filled in), or None when they do not
        fit now. evict: stop idle workers of other pools, least recently used first, to make room."""
        picked = self._pick(candidates, count, gb)
        if picked is None and evict:
            idle = [
                (since, h)
                for h in self.holds
                if h.owner is not hold.owner
                and h.evict is not None
                and h.idle_since is not None
                and (since := h.idle_since()) is not None
                and any(i in candidates for i in h.devices)
            ]
            for _, h in sorted(idle, key=lambda x: x[0]):
                if h.evict is not None and h.evict():
                    self.release(h, notify=False)
                    picked = self._pick(candidates, count, gb)
                    if picked is not None:
                        break
        if picked is None:
            return None
        hold.devices, hold.gb = picked, gb
        self.holds.append(hold)
        return hold

    def release(self, hold: Hold | None, *, notify: bool = True) -> None:
        if hold is None or hold not in self.holds:
            return
        self.holds.remove(hold)
        if notify:
            for wake in list(self._waiters):
                wake()

    def wait(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever a GPU is given back (a waiting pool pumps its queue again)."""
        if wake not in self._waiters:
            self._waiters.append(wake)

    def unwait(self, wake: Callable[[], None]) -> None:
        if wake in self._waiters:
            self._waiters.remove(wake)
