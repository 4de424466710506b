"""Endpoint specs and their validation: one set of rules for the decorator (errors at import),
the runtime (errors at deploy) and the language server (diagnostics while typing).

Stdlib only, so it imports fast.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import modelsize
from .catalog import GPURequest, catalog
from .params import DEFAULTS  # the decorator's parameters and defaults: params.PARAMETERS
from .problems import Problem
from .retries import Retries
from .retries import check as check_retries

__all__ = [
    "Problem",
    "SpecError",
    "EndpointSpec",
    "DEFAULTS",
    "MAX_TIMEOUT",
    "validate",
    "build_spec",
    "model_problems",
    "Param",
    "params_of",
    "example_problems",
]

MAX_TIMEOUT = 86400  # one day
SEVERITIES = ("error", "warning", "info")

# Parameter names people bring from other tools -> ours.
_SYNONYMS = {
    "gpus": "gpu",
    "min_workers": "workers",
    "max_workers": "workers",
    "min_containers": "workers",
    "max_containers": "workers",
    "replicas": "workers",
    "max_concurrency": "concurrency",
    "allow_concurrent_inputs": "concurrency",
    "max_inputs": "concurrency",
    "deps": "dependencies",
    "requirements": "dependencies",
    "pip": "dependencies",
    "pip_install": "dependencies",
    "packages": "dependencies",
    "environment": "env",
    "env_vars": "env",
    "scaledown_window": "idle_timeout",
    "container_idle_timeout": "idle_timeout",
    "idle": "idle_timeout",
    "examples": "example",
}

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_RE = re.compile(
    r"(^|_)(TOKEN|SECRET|KEY|PASSWORD|PASSWD|PWD|APIKEY|CREDENTIALS?)(_|$)", re.IGNORECASE
)
# A light PEP 508 check: name, optional [extras], optional version clauses (optionally in
# parentheses) or "@ url", optional "; marker". Enough to catch typos like "torch>>2".
_PKG = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION_CLAUSE = r"(?:===|~=|==|!=|<=|>=|<|>)\s*[A-Za-z0-9*+!_.-]+"
_VERSIONS = rf"{_VERSION_CLAUSE}(?:\s*,\s*{_VERSION_CLAUSE})*"
_REQUIREMENT_RE = re.compile(
    rf"\s*{_PKG}\s*"
    rf"(?:\[\s*(?:{_PKG}(?:\s*,\s*{_PKG})*)?\s*\])?\s*"
    rf"(?:{_VERSIONS}|\(\s*{_VERSIONS}\s*\)|@\s*\S+)?\s*"
    r"(?:;\s*\S.*)?"
)


class SpecError(ValueError):
    """An endpoint spec with at least one error; ``problems`` holds all of them."""

    def __init__(self, problems: list[Problem], name: str | None = None) -> None:
        self.problems = list(problems)
        self.name = name
        super().__init__(str(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the problems (not the message) so it survives pickling to a client.
        return (type(self), (self.problems, self.name))

    def __str__(self) -> str:
        prefix = f"endpoint {self.name!r}: " if self.name else ""
        return "\n".join(prefix + p.describe() for p in self.problems) or "invalid endpoint"


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    gpu: tuple[str, ...] = ()  # canonical labels in fallback order, e.g. ("H100:2", "A100-80GB")
    workers_min: int = 0
    workers_max: int = 1
    concurrency: int = 1
    timeout: float = 300.0
    idle_timeout: float = 60.0
    dependencies: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    example: dict[str, Any] | None = field(default=None, hash=False)
    retries: Retries | None = None  # retries.py: infrastructure failures, and the exceptions named
    secrets: tuple[str, ...] = ()  # names only; the values travel with each call (secretvals.py)
    runtime: str | None = (
        None  # pinned to this runtime of slipstream.toml's [runtimes] (sdk/routing.py)
    )
    gpu_memory: float | None = None  # GB one worker needs on each GPU (server/allocator.py)

    @property
    def gpu_request(self) -> GPURequest:
        request, problems = catalog().parse(list(self.gpu) or None)
        if request is None:
            raise SpecError(problems, self.name)
        return request

    @property
    def gpu_label(self) -> str:
        """The primary GPU ("H100", "H100:2"), or "CPU"; what a worker runs on first."""
        return self.gpu[0] if self.gpu else "CPU"

    @property
    def is_cpu(self) -> bool:
        return not self.gpu

    def price_per_second(self, tier: str = "flex") -> float:
        """USD per second per worker on the primary choice (0.0 on the CPU)."""
        return self.gpu_request.price_per_second(tier)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "gpu": list(self.gpu),
            "workers_min": self.workers_min,
            "workers_max": self.workers_max,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "dependencies": list(self.dependencies),
            "env": dict(self.env),
            "example": self.example,
            "retries": self.retries.to_dict() if self.retries else None,
            "secrets": list(self.secrets),
            "runtime": self.runtime,
            "gpu_memory": self.gpu_memory,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointSpec:
        """Rebuild (and re-validate) a spec from ``to_dict()`` output; raises SpecError.

        Keys this version does not know are ignored, so newer clients can talk to older runtimes.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise SpecError([Problem("bad-name", "spec data has no endpoint name", "name")])
        kwargs: dict[str, Any] = {"name": data["name"], "gpu": list(data.get("gpu") or ()) or None}
        if "workers_min" in data or "workers_max" in data:
            kwargs["workers"] = (
                data.get("workers_min", 0),
                data.get("workers_max", DEFAULTS["workers"]),
            )
        for key in DEFAULTS.keys() - {
            "name",
            "gpu",
            "workers",
        }:  # the rest: as the decorator takes them
            if key in data:
                kwargs[key] = data[key]
        return build_spec(data["name"], **kwargs)


def validate(name: str, /, **kwargs: Any) -> tuple[EndpointSpec | None, list[Problem]]:
    """Check ``@endpoint(**kwargs)`` on the function or class called ``name``.

    Returns (spec, problems): spec is None when any problem is an error; warnings come back
    alongside a spec.
    """
    problems: list[Problem] = []
    for key in kwargs:
        if key not in DEFAULTS:
            problems.append(_unknown_parameter(key))
    args = {**DEFAULTS, **{k: v for k, v in kwargs.items() if k in DEFAULTS}}

    endpoint_name = args["name"] if args["name"] is not None else name
    _check_name(endpoint_name, problems)

    request, gpu_problems = catalog().parse(args["gpu"])
    problems += gpu_problems
    workers = _check_workers(args["workers"], problems)
    concurrency = _check_concurrency(args["concurrency"], problems)
    timeout = _check_seconds(args["timeout"], "timeout", problems)
    idle_timeout = _check_seconds(args["idle_timeout"], "idle_timeout", problems)
    dependencies = _check_dependencies(args["dependencies"], problems)
    env = _check_env(args["env"], problems)
    example = _check_example(args["example"], problems)
    retries, retry_problem = check_retries(args["retries"])
    if retry_problem:
        problems.append(
            Problem(
                "bad-retries",
                retry_problem,
                "retries",
                "Write e.g. retries=3, or retries=Retries(3, backoff=2.0, on=(ConnectionError,)).",
            )
        )

    secrets = _check_secrets(args["secrets"], problems)
    runtime = _check_runtime(args["runtime"], problems)
    gpu_memory = _check_gpu_memory(args["gpu_memory"], problems)

    if any(p.severity == "error" for p in problems):
        return None, problems
    assert request is not None and workers is not None
    spec = EndpointSpec(
        name=endpoint_name,
        gpu=request.labels,
        workers_min=workers[0],
        workers_max=workers[1],
        concurrency=concurrency,  # type: ignore[arg-type]
        timeout=timeout,  # type: ignore[arg-type]
        idle_timeout=idle_timeout,  # type: ignore[arg-type]
        dependencies=dependencies,
        env=env,
        example=example,
        retries=retries,
        secrets=secrets,
        runtime=runtime,
        gpu_memory=gpu_memory,
    )
    return spec, problems


def build_spec(name: str, /, **kwargs: Any) -> EndpointSpec:
    """Like validate(), but raises SpecError listing every problem when any is an error."""
    spec, problems = validate(name, **kwargs)
    if spec is None:
        shown = kwargs.get("name") if isinstance(kwargs.get("name"), str) else name
        raise SpecError(problems, shown)
    return spec


# One parameter of an endpoint function or method: (name, kind, required). kind is one of
# inspect.Parameter's kind names ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY", "VAR_KEYWORD", ...).
Param = tuple[str, str, bool]


def params_of(fn: Any, skip_first: bool = False) -> list[Param]:
    """The parameters of fn (skip_first drops `self`), in the form example_problems() takes."""
    import inspect

    try:
        values = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    if skip_first:
        values = values[1:]
    return [(p.name, p.kind.name, p.default is p.empty) for p in values]


def _kwargs_problems(example: Mapping[str, Any], params: list[Param], label: str) -> list[str]:
    takes_any = any(kind == "VAR_KEYWORD" for _, kind, _ in params)
    named = [n for n, kind, _ in params if kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")]
    out = []
    unknown = [k for k in example if k not in named and not takes_any]
    if unknown:
        takes = f"it takes {', '.join(named)}" if named else "it takes no keyword arguments"
        out.append(f"{label}() has no parameter {_names(unknown)} ({takes})")
    missing = [
        n
        for n, kind, required in params
        if required and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD") and n not in example
    ]
    if missing:
        out.append(f"{label}() needs {_names(missing)}, which the example does not give")
    return out


def _names(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def example_problems(
    example: Any, signatures: Mapping[str, list[Param]] | None, is_class: bool, symbol: str = ""
) -> list[Problem]:
    """`example=` checked against the function's parameters (a class: {method: kwargs}, each
    against that method's). ``signatures`` maps "" (a function) or each public method to its
    parameters; None when they are not known (nothing is checked)."""
    if not isinstance(example, Mapping) or signatures is None:
        return []
    messages: list[str] = []
    if is_class:
        for method, kwargs in example.items():
            if method not in signatures:
                have = ", ".join(sorted(signatures)) or "none"
                messages.append(
                    f"example names method {method!r}, which {symbol or 'the class'} does not "
                    f"have (public methods: {have})"
                )
            elif not isinstance(kwargs, Mapping):
                messages.append(
                    f"example[{method!r}] must be a dict of keyword arguments for {method}(), "
                    f"not {type(kwargs).__name__}"
                )
            else:
                messages += _kwargs_problems(kwargs, signatures[method], method)
        hint = "For a class, give {'method': {keyword arguments}}, e.g. example={'paint': {'prompt': 'a cat'}}."
    else:
        messages += _kwargs_problems(example, signatures.get("", []), symbol or "the function")
        hint = "Give the function's keyword arguments, matching its signature."
    return [
        Problem("example-mismatch", f"example does not match the signature: {m}", "example", hint)
        for m in messages
    ]


def model_problems(spec: EndpointSpec, model_ids: list[str]) -> list[Problem]:
    """Models (by id) whose estimated memory exceeds the endpoint's primary GPU choice."""
    primary = spec.gpu_request.primary
    if primary is None:
        return []
    problems: list[Problem] = []
    for model_id in model_ids:
        est = modelsize.estimate(model_id)
        if est is None or modelsize.fits(est, primary):
            continue
        problems.append(
            Problem(
                "model-too-large",
                f"{model_id} needs ~{est.vram_gb:.1f} GB ({est.dtype}) but {primary.label} has "
                f"{primary.vram_gb:g} GB",
                "gpu",
                _fit_hint(est.vram_gb),
            )
        )
    return problems


def _fit_hint(vram_gb: float) -> str:
    cat = catalog()
    fitting = cat.fitting(vram_gb)
    if fitting:
        best = fitting[0]
        return (
            f"Use gpu={best.name!r} ({best.vram_gb:g} GB, {_price(best.price_per_second())}/s), "
            "the cheapest GPU that fits"
        )
    combos = [
        (g.price_per_second() * n, n, g)
        for g in cat.gpus
        for n in (2, 4, 8)  # splits come in powers of two
        if g.vram_gb * n >= vram_gb
    ]
    if not combos:
        return "No GPU in the catalog fits it; load it in a smaller dtype (int8 or int4)"
    price, n, g = min(combos, key=lambda c: (c[0], c[1]))
    return (
        f"No single GPU fits it; gpu='{g.name}:{n}' ({g.vram_gb * n:g} GB, {_price(price)}/s) "
        "is the cheapest combination, if the model can be split across GPUs"
    )


def _price(usd: float) -> str:
    return "$" + f"{usd:.6f}".rstrip("0").rstrip(".")


def _unknown_parameter(key: str) -> Problem:
    known = list(DEFAULTS)
    guess = _SYNONYMS.get(key.lower()) or next(
        iter(difflib.get_close_matches(key, known, n=1, cutoff=0.5)), None
    )
    hint = f"Did you mean {guess!r}?" if guess else f"@endpoint accepts {', '.join(known)}."
    return Problem("unknown-parameter", f"unknown parameter {key!r}", key, hint)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_name(name: Any, problems: list[Problem]) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        problems.append(
            Problem(
                "bad-name",
                f"endpoint name {name!r} is not valid: it must start with a letter or '_' and "
                "use only letters, digits, '_', '.' and '-' (at most 64 characters)",
                "name",
                "Pass name='my_endpoint', or leave name=None to use the function's name.",
            )
        )


def _check_workers(value: Any, problems: list[Problem]) -> tuple[int, int] | None:
    hint = (
        "Use workers=3 for up to 3 workers that scale from zero, or workers=(1, 3) to keep 1 "
        "warm and scale up to 3."
    )
    if _is_int(value):
        # n means (0, n): scale from zero. 0 would be an endpoint that can never run.
        if value >= 1:
            return 0, value
        problems.append(
            Problem("bad-workers", f"workers must be at least 1, not {value}", "workers", hint)
        )
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        low, high = value
        if low < 0 or high < 1:
            problems.append(
                Problem(
                    "bad-workers",
                    f"workers=({low}, {high}): min must be >= 0 and max >= 1",
                    "workers",
                    hint,
                )
            )
            return None
        if low > high:
            problems.append(
                Problem(
                    "workers-min-gt-max",
                    f"workers=({low}, {high}): min ({low}) is greater than max ({high})",
                    "workers",
                    f"Swap them: workers=({high}, {low}).",
                )
            )
            return None
        return low, high
    problems.append(
        Problem(
            "bad-workers",
            f"workers must be a whole number or a (min, max) pair of whole numbers, not {value!r}",
            "workers",
            hint,
        )
    )
    return None


def _check_concurrency(value: Any, problems: list[Problem]) -> int | None:
    if _is_int(value) and value >= 1:
        return value
    problems.append(
        Problem(
            "bad-concurrency",
            f"concurrency must be a whole number >= 1 (requests one worker runs at once), "
            f"not {value!r}",
            "concurrency",
            "Use concurrency=1 unless the function is safe to run several times at once.",
        )
    )
    return None


def _check_gpu_memory(value: Any, problems: list[Problem]) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not (math.isfinite(float(value)) and float(value) > 0):
        problems.append(
            Problem(
                "bad-gpu-memory",
                f"gpu_memory must be a number of GB more than 0, not {value!r}",
                "gpu_memory",
                "Write e.g. gpu_memory=24 (GB one worker needs on each of its GPUs).",
            )
        )
        return None
    return float(value)


def _check_seconds(value: Any, name: str, problems: list[Problem]) -> float | None:
    if not _is_number(value):
        problems.append(
            Problem(
                "timeout-type",
                f"{name} must be a number of seconds, not {type(value).__name__} {value!r}",
                name,
                f"Write e.g. {name}={DEFAULTS[name]}.",
            )
        )
        return None
    seconds = float(value)
    if name == "timeout":
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
            problems.append(
                Problem(
                    "bad-timeout",
                    f"timeout must be more than 0 and at most {MAX_TIMEOUT} seconds (a day), "
                    f"not {value!r}",
                    name,
                    "Use the longest a single call may take, e.g. timeout=600.",
                )
            )
            return None
    elif not (math.isfinite(seconds) and seconds >= 0):
        problems.append(
            Problem(
                "bad-idle-timeout",
                f"idle_timeout must be a number of seconds >= 0, not {value!r}",
                name,
                "Use e.g. idle_timeout=60 to stop idle workers after a minute "
                "(0 stops them at once).",
            )
        )
        return None
    return seconds


def _check_dependencies(value: Any, problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        hint = (
            f"Wrap it in a list: dependencies=[{value!r}]."
            if isinstance(value, str)
            else "Write e.g. dependencies=['diffusers>=0.30', 'transformers']."
        )
        problems.append(
            Problem(
                "bad-dependencies",
                f"dependencies must be a list of requirement strings, not {type(value).__name__}",
                "dependencies",
                hint,
            )
        )
        return ()
    good: list[str] = []
    for dep in value:
        if isinstance(dep, str) and dep.strip() and _REQUIREMENT_RE.fullmatch(dep):
            good.append(dep.strip())
            continue
        problems.append(
            Problem(
                "bad-dependencies",
                f"{dep!r} is not a valid requirement",
                "dependencies",
                "Write a pip requirement: a package name, optional [extras] and an optional "
                "version, e.g. 'torch>=2.1' or 'diffusers[torch]==0.30.0'.",
            )
        )
    return tuple(good)


def _check_runtime(value: Any, problems: list[Problem]) -> str | None:
    """runtime="gpu-box": a name under [runtimes] in slipstream.toml (sdk/routing.py checks it is there)."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", value):
        problems.append(
            Problem(
                "bad-runtime",
                f"runtime must be the name of a runtime in slipstream.toml's [runtimes], not {value!r}",
                "runtime",
                'Write e.g. runtime="gpu-box", with [runtimes.gpu-box] url = "ssh://gpu-box" in slipstream.toml.',
            )
        )
        return None
    return value


def _check_secrets(value: Any, problems: list[Problem]) -> tuple[str, ...]:
    """secrets=["HF_TOKEN", ...]: names of environment variables (values never appear here)."""
    hint = "Write e.g. secrets=['HF_TOKEN']: names of variables set in your environment or the project's .env."
    if value is None or value == ():
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        problems.append(
            Problem(
                "bad-secrets",
                f"secrets must be a list of environment variable names, not {type(value).__name__}"
                + (f" {value!r}" if isinstance(value, str) else ""),
                "secrets",
                hint,
            )
        )
        return ()
    names = []
    for item in value:
        if not isinstance(item, str) or not _ENV_KEY_RE.fullmatch(item):
            problems.append(
                Problem(
                    "bad-secrets",
                    f"secrets entry {item!r} is not an environment variable name",
                    "secrets",
                    hint,
                )
            )
        elif item not in names:
            names.append(item)
    return tuple(names)


def _check_env(value: Any, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(
            Problem(
                "bad-env",
                f"env must be a dict of strings, not {type(value).__name__}",
                "env",
                "Write e.g. env={'HF_HUB_OFFLINE': '1'}.",
            )
        )
        return ()
    pairs: list[tuple[str, str]] = []
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.fullmatch(key):
            problems.append(
                Problem(
                    "bad-env",
                    f"env key {key!r} is not a valid environment variable name",
                    "env",
                    "Use letters, digits and '_', not starting with a digit.",
                )
            )
            continue
        if not isinstance(val, str):
            problems.append(
                Problem(
                    "bad-env",
                    f"env[{key!r}] must be a string, not {type(val).__name__} {val!r}",
                    "env",
                    f"Quote it: env={{{key!r}: {str(val)!r}}}.",
                )
            )
            continue
        if _SECRET_RE.search(key):
            problems.append(
                Problem(
                    "bad-env",
                    f"env[{key!r}] looks like a secret; env values are stored in the endpoint "
                    "spec and sent with every deploy",
                    "env",
                    f"Keep secrets out of code: use secrets=[{key!r}] instead; the value is then taken "
                    "from your environment or the project's .env at each call and never stored.",
                    "warning",
                )
            )
        pairs.append((key, val))
    return tuple(sorted(pairs))


def _check_example(value: Any, problems: list[Problem]) -> dict[str, Any] | None:
    if value is None:
        return None
    hint = "Give sample keyword arguments, e.g. example={'prompt': 'a cat'}."
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        problems.append(
            Problem(
                "bad-example",
                "example must be a dict of keyword arguments with string keys, "
                f"not {type(value).__name__}",
                "example",
                hint,
            )
        )
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(
            Problem(
                "bad-example",
                f"example must be JSON-serialisable (strings, numbers, bools, None, lists, "
                f"dicts): {exc}",
                "example",
                hint,
            )
        )
        return None
    return dict(value)
