"""The swap-model list in models.toml: which models suit each endpoint, and how to drive them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["ModelChoice", "choices", "find"]

MODELS_TOML = Path(__file__).with_name("models.toml")


@dataclass(frozen=True)
class ModelChoice:
    id: str
    description: str
    guidance: float | None = None
    steps: int | None = None


@cache
def _all() -> dict[str, tuple[ModelChoice, ...]]:
    data = tomllib.loads(MODELS_TOML.read_text("utf-8"))
    return {
        name: tuple(ModelChoice(**m) for m in table["models"])
        for name, table in data["endpoints"].items()
    }


def choices(endpoint: str) -> tuple[ModelChoice, ...]:
    """The models offered for an endpoint, its default first."""
    return _all()[endpoint]


def find(model_id: str) -> ModelChoice | None:
    for models in _all().values():
        for m in models:
            if m.id == model_id:
                return m
    return None
