"""The spec of `f.with_options(...)`: the base endpoint's spec with some options replaced, named
after the base and a hash of the options (the runtime serves it with a pool of its own,
server/variants.py)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .endpoint_spec import EndpointSpec, build_spec
from .params import DEFAULTS, OPTIONS  # OPTIONS: the parameters with_options() may change

__all__ = ["OPTIONS", "variant_name", "variant_spec"]


def variant_name(base: str, options: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[
        :8
    ]
    return f"{base}.v{digest}"


def variant_spec(base: EndpointSpec, options: dict[str, Any]) -> EndpointSpec:
    """The base's spec with these options replaced (validated like the decorator's: SpecError);
    TypeError for an option with_options does not take."""
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        raise TypeError(
            f"with_options() takes {', '.join(OPTIONS)}; not {', '.join(map(repr, unknown))}"
        )
    d = base.to_dict()
    kwargs: dict[str, Any] = {
        "gpu": d["gpu"] or None,
        "workers": (d["workers_min"], d["workers_max"]),
        "concurrency": d["concurrency"],
        "timeout": d["timeout"],
        "idle_timeout": d["idle_timeout"],
        "dependencies": d["dependencies"],
        "env": d["env"],
        "retries": d["retries"] or 0,
    }
    kwargs.update(options)
    kwargs = {k: v for k, v in kwargs.items() if k in DEFAULTS}
    return build_spec(base.name, name=variant_name(base.name, options), **kwargs)
