"""Retries of failed calls: `@endpoint(retries=3)` or `retries=Retries(3, backoff=2.0, on=(...))`.

By default only infrastructure failures are retried: the worker crashed (exit, signal, out of
memory), the call ran past its timeout, or (in the SDK) the runtime was lost mid-call. The
user's own exceptions are never retried unless named in `on=`. The runtime retries on its side
(every form of call: SDK, HTTP, spawned, map items), logs each retry and counts it in
`stats.retries` and `slipstream_retries_total`. A streaming call is not retried once it has
produced items (they would be repeated).

A CUDA out-of-memory error (`torch.cuda.OutOfMemoryError`, or an error whose message says "CUDA
out of memory") moves the call to the next GPU of the decorator's fallback list that the runtime
has (`gpu=["H100", "A100-80GB"]`), with or without `retries=`: logged, counted in
`stats.gpu_fallbacks` and `slipstream_gpu_fallbacks_total`, and listed in the call's `retries`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Retries", "MAX_RETRIES"]

MAX_RETRIES = 10
# Which failures are infrastructure ones, retried by default, is the error kind's to say
# (protocol/kinds.py ErrorKind.retried_by_default); server/retrying.py asks both.


@dataclass(frozen=True, init=False)
class Retries:
    """How a failed call is retried: up to `max_retries` more attempts, waiting `backoff`
    seconds before the first, times `backoff_coefficient` before each next one (at most
    `max_backoff`). `on`: exception types (or their names) of your own code to retry too."""

    max_retries: int
    backoff: float
    backoff_coefficient: float
    max_backoff: float
    on: tuple[str, ...]

    def __init__(
        self,
        max_retries: int,
        backoff: float = 1.0,
        on: Iterable[type[BaseException] | str] = (),
        backoff_coefficient: float = 2.0,
        max_backoff: float = 60.0,
    ) -> None:
        object.__setattr__(self, "max_retries", max_retries)
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "backoff_coefficient", backoff_coefficient)
        object.__setattr__(self, "max_backoff", max_backoff)
        names = []
        for e in (on,) if isinstance(on, (str, type)) else on:
            if isinstance(e, type) and issubclass(e, BaseException):
                mod = e.__module__
                names.append(e.__qualname__ if mod == "builtins" else f"{mod}.{e.__qualname__}")
            else:
                names.append(e)
        object.__setattr__(self, "on", tuple(names))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.backoff * self.backoff_coefficient ** (attempt - 1), self.max_backoff)

    def retries_exception(self, type_name: str) -> bool:
        """Whether an exception of the endpoint's own code (its qualified type name) is retried."""
        return any(type_name == n or type_name.rsplit(".", 1)[-1] == n for n in self.on)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "backoff_coefficient": self.backoff_coefficient,
            "max_backoff": self.max_backoff,
            "on": list(self.on),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Retries:
        return cls(
            int(d.get("max_retries", 0)),
            float(d.get("backoff", 1.0)),
            tuple(d.get("on", ())),
            float(d.get("backoff_coefficient", 2.0)),
            float(d.get("max_backoff", 60.0)),
        )


def check(value: Any) -> tuple[Retries | None, str | None]:
    """The decorator's `retries=` as a Retries (None for no retries), or what is wrong with it."""
    if value is None or value == 0:
        return None, None
    if isinstance(value, dict):
        try:
            value = Retries.from_dict(value)
        except (TypeError, ValueError) as exc:
            return None, f"retries dict is not valid: {exc}"
    if isinstance(value, bool) or not isinstance(value, (int, Retries)):
        return (
            None,
            f"retries must be a count or Retries(max_retries, backoff=..., on=(...)), not {type(value).__name__} {value!r}",
        )
    r = Retries(value) if isinstance(value, int) else value
    if (
        not isinstance(r.max_retries, int)
        or isinstance(r.max_retries, bool)
        or not 0 <= r.max_retries <= MAX_RETRIES
    ):
        return None, f"retries must be between 0 and {MAX_RETRIES}, not {r.max_retries!r}"
    for f in ("backoff", "backoff_coefficient", "max_backoff"):
        v = getattr(r, f)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            return None, f"Retries {f} must be a number of seconds >= 0, not {v!r}"
    if r.backoff_coefficient < 1:
        return None, f"Retries backoff_coefficient must be >= 1, not {r.backoff_coefficient!r}"
    bad = [n for n in r.on if not isinstance(n, str) or not n]
    if bad:
        return None, f"Retries on= takes exception types or their names, not {bad[0]!r}"
    return (r if r.max_retries else None), None
