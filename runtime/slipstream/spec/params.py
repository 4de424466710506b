"""The @endpoint decorator's parameters, defined once: `endpoint()` (endpoint.py), the spec's
defaults and validation (endpoint_spec.py), `with_options()` (variants.py) and the editor's
finder (daemon/slipstream_daemon/finder.py) all read this table.

Adding a parameter: add a row here, the keyword to `endpoint()`'s signature (a test checks they
match), its check to endpoint_spec.validate, and a row to docs/endpoint-api.md.

Stdlib only, so it imports fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .problems import Problem

__all__ = ["DecoratorParam", "PARAMETERS", "DEFAULTS", "POSITIONAL", "OPTIONS", "bind_arguments"]


@dataclass(frozen=True)
class DecoratorParam:
    name: str
    default: Any
    doc: str
    positional: bool = (
        False  # may be written without its keyword, in this order: @endpoint("paint")
    )
    option: bool = False  # f.with_options() may change it


PARAMETERS: tuple[DecoratorParam, ...] = (
    DecoratorParam(
        "name", None, "the endpoint's name (default: the function's or class's)", positional=True
    ),
    DecoratorParam(
        "gpu", None, "None (CPU), 'H100', 'H100:2', or a list in fallback order", option=True
    ),
    DecoratorParam(
        "gpu_memory",
        None,
        "GB of memory one worker needs on each of its GPUs (default: the models' estimate)",
    ),
    DecoratorParam("workers", 1, "n (scale from zero to n) or (min, max)", option=True),
    DecoratorParam("concurrency", 1, "calls one worker runs at once", option=True),
    DecoratorParam("timeout", 300, "seconds a call may run", option=True),
    DecoratorParam("idle_timeout", 60, "seconds an idle worker above min stays", option=True),
    DecoratorParam("dependencies", (), "pip requirements installed on the runtime"),
    DecoratorParam("env", None, "environment variables for the workers"),
    DecoratorParam("example", None, "keyword arguments the editor's Run lens uses"),
    DecoratorParam(
        "retries", 0, "n, or Retries(...): runs again after an infrastructure failure", option=True
    ),
    DecoratorParam("secrets", (), "names of environment variables sent with each call"),
    DecoratorParam(
        "runtime", None, "run on this runtime of slipstream.toml's [runtimes] (docs/runtimes.md)"
    ),
)

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}
POSITIONAL: tuple[str, ...] = tuple(p.name for p in PARAMETERS if p.positional)
OPTIONS: tuple[str, ...] = tuple(p.name for p in PARAMETERS if p.option)

T = TypeVar("T")


def bind_arguments(
    positional: Sequence[T], keywords: Sequence[tuple[str, T]]
) -> tuple[dict[str, T], list[tuple[T, Problem]]]:
    """The decorator's arguments by parameter name, bound as Python binds them; the problems
    each come with the argument they are about: a positional argument past POSITIONAL (say what
    to write instead) and a parameter given twice. Unknown keywords are validate()'s to report.

    The decorator (at import) and the editor (while typing) both bind through here, so
    `@endpoint("paint")` means the same in both, and what one refuses the other flags."""
    bound: dict[str, T] = {}
    problems: list[tuple[T, Problem]] = []
    keyword_names = ", ".join(p.name for p in PARAMETERS if not p.positional)
    for index, value in enumerate(positional):
        if index < len(POSITIONAL):
            bound[POSITIONAL[index]] = value
            continue
        problems.append(
            (
                value,
                Problem(
                    "positional-argument",
                    f"@endpoint takes only {_first(POSITIONAL)} without a keyword; argument {index + 1} needs one",
                    None,
                    f'Write it as keyword=value, e.g. gpu="H100" (after the name, @endpoint takes {keyword_names}).',
                ),
            )
        )
    for key, value in keywords:
        if key in bound:
            problems.append(
                (
                    value,
                    Problem(
                        "duplicate-argument",
                        f"@endpoint got {key!r} twice: without a keyword and as {key}=",
                        key,
                        f"Give it once, e.g. @endpoint({key}=...).",
                    ),
                )
            )
            continue
        bound[key] = value
    return bound, problems


def _first(names: tuple[str, ...]) -> str:
    return " and ".join(f"the {n}" for n in names) or "no argument"
