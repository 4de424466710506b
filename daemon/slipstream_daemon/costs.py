"""Measured run costs per endpoint, and how prices and durations are written in the editor."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

__all__ = ["CostBook", "Measured", "duration", "money", "per_second"]


def per_second(usd: float) -> str:
    """A per-second price as the catalog writes it: 0.00116 -> "$0.00116"."""
    if usd <= 0:
        return "$0"
    return "$" + f"{usd:.6f}".rstrip("0").rstrip(".")


def money(usd: float) -> str:
    """A cost with two significant digits below a cent: 0.0031 -> "$0.0031", 1.234 -> "$1.23"."""
    if usd <= 0 or not math.isfinite(usd):
        return "$0"
    decimals = max(2, -math.floor(math.log10(usd)) + 1)
    return f"${usd:.{min(decimals, 8)}f}"


def duration(seconds: float) -> str:
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


@dataclass
class Measured:
    calls: int = 0
    last_duration_s: float = 0.0
    last_cost_usd: float = 0.0
    total_duration_s: float = 0.0
    total_cost_usd: float = 0.0

    @property
    def mean_cost_usd(self) -> float:
        return self.total_cost_usd / self.calls if self.calls else 0.0

    def summary(self) -> str:
        """ "last 2.7 s = $0.0031" """
        return f"last {duration(self.last_duration_s)} = {money(self.last_cost_usd)}"


class CostBook:
    """Durations and costs the runtime measured, per endpoint name, for this session."""

    def __init__(self) -> None:
        self._by_endpoint: dict[str, Measured] = {}
        self._lock = threading.Lock()
        self.session_usd = 0.0

    def record(self, endpoint: str, duration_s: float, cost_usd: float) -> Measured:
        with self._lock:
            m = self._by_endpoint.setdefault(endpoint, Measured())
            m.calls += 1
            m.last_duration_s = duration_s
            m.last_cost_usd = cost_usd
            m.total_duration_s += duration_s
            m.total_cost_usd += cost_usd
            self.session_usd += cost_usd
            return m

    def get(self, endpoint: str) -> Measured | None:
        with self._lock:
            return self._by_endpoint.get(endpoint)
