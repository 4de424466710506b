"""f.with_options(...) against a real runtime: a variant with other settings and a pool of its
own, the decorator unchanged; it survives a deploy by another client (registered again)."""

from __future__ import annotations

import httpx
import pytest

from slipstream.protocol.errors import EndpointTimeout
from slipstream.spec.endpoint_spec import SpecError
from tests.reliability.helpers import HANG_BOUND_S, auth

APP = """
import os, time
from slipstream import endpoint

@endpoint(workers=1, timeout=1)
def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
"""


@pytest.fixture()
def proj(runtime, project_factory):
    return project_factory(runtime, {"opt_app.py": APP})


def _endpoints(rt) -> dict[str, dict]:
    r = httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S)
    return {e["name"]: e for e in r.json()["endpoints"]}


def test_a_variant_has_its_own_settings_and_pool(proj, runtime):
    app = proj.module("opt_app")
    base_pid = app.nap(0)
    with pytest.raises(EndpointTimeout):
        app.nap(1.5)  # the decorator's timeout=1
    longer = app.nap.with_options(timeout=10, workers=2)
    assert longer.name.startswith("nap.v") and longer.spec.timeout == 10
    pid = longer(1.5)
    assert pid != base_pid, "the variant runs on a pool of its own"
    eps = _endpoints(runtime)
    assert eps[longer.name]["spec"]["timeout"] == 10 and eps[longer.name]["pool"]["max"] == 2
    assert eps["nap"]["spec"]["timeout"] == 1, "the decorator's endpoint is unchanged"
    assert len(list(longer.map([0.0, 0.0]))) == 2, "every call form works on a variant"
    assert app.nap.with_options(timeout=10, workers=2).name == longer.name, (
        "the same options name the same variant"
    )
    assert longer.with_options(workers=3).spec.timeout == 10, "options add up"


def test_a_variant_is_registered_again_after_another_clients_deploy(proj, runtime):
    app = proj.module("opt_app")
    longer = app.nap.with_options(timeout=10)
    longer(0)
    proj.write("opt_app.py", APP + "\n# edited\n")
    proj.sync()  # another client deploys: the project's pools are rebuilt, the variant's dropped
    assert longer.name not in _endpoints(runtime)
    assert isinstance(longer(1.2), int), "registered again on the next call, with its own timeout"


def test_bad_options_fail_where_written(proj):
    app = proj.module("opt_app")
    with pytest.raises(SpecError, match="timeout"):
        app.nap.with_options(timeout=-1)
    with pytest.raises(TypeError, match="needs at least one of"):
        app.nap.with_options()
    with pytest.raises(TypeError, match="unexpected keyword"):
        app.nap.with_options(gpus="H100")
