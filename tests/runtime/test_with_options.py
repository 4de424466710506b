"""f.with_options(...) against a real runtime: a variant with other settings and a pool of its
own, the decorator unchanged; it follows a deploy by another client onto the new code, and the
calls it is running finish."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from slipstream.protocol.errors import EndpointTimeout
from slipstream.spec.endpoint_spec import SpecError
from tests.reliability.helpers import HANG_BOUND_S, auth, wait_for

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


VERSIONED = """
import time
from slipstream import endpoint

VERSION = "{version}"

@endpoint(workers=1, timeout=1)
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return VERSION
"""


def test_a_variants_running_calls_finish_across_another_scripts_deploy(proj, runtime):
    """Another script of the project deploys (it does not use the variant) while the variant
    runs a map: every item comes back, and the variant serves the new code afterwards."""
    proj.write("opt_app.py", VERSIONED.format(version="v1"))
    app = proj.module("opt_app")
    longer = app.nap.with_options(timeout=10, workers=2)
    assert longer(0) == "v1"
    g1 = longer.last_call.generation
    with cf.ThreadPoolExecutor(1) as ex:
        mapped = ex.submit(lambda: list(longer.map([0.3] * 8)))
        wait_for(
            lambda: any(w["inflight"] for w in _endpoints(runtime)[longer.name]["pool"]["workers"]),
            "the variant's map to be running",
        )
        proj.write("opt_app.py", VERSIONED.format(version="v2"))
        proj.write("other.py", "X = 1\n")
        g2 = proj.rt.client().sync(proj.root).generation  # another script's deploy
        results = mapped.result(timeout=HANG_BOUND_S)  # a lost item raises MapError here
    assert len(results) == 8 and "v1" in results and set(results) <= {"v1", "v2"}, results
    gens = longer.last_call.generations
    assert g1 in gens and sorted(i for idx in gens.values() for i in idx) == list(range(8))
    eps = _endpoints(runtime)
    assert eps[longer.name]["generation"] == g2, "the variant follows the project's deploys"
    assert eps[longer.name]["spec"]["timeout"] == 10 and eps[longer.name]["stats"]["crashes"] == 0
    assert longer(1.2) == "v2", "the new code, with the variant's own timeout"
    assert longer.last_call.generation == g2


def test_a_variant_goes_with_its_base_endpoint(proj, runtime):
    app = proj.module("opt_app")
    longer = app.nap.with_options(timeout=10)
    longer(0)
    proj.write(
        "opt_app.py", "from slipstream import endpoint\n\n@endpoint\ndef other():\n    return 1\n"
    )
    proj.sync()
    assert longer.name not in _endpoints(runtime) and "nap" not in _endpoints(runtime)


def test_bad_options_fail_where_written(proj):
    app = proj.module("opt_app")
    with pytest.raises(SpecError, match="timeout"):
        app.nap.with_options(timeout=-1)
    with pytest.raises(TypeError, match="needs at least one of"):
        app.nap.with_options()
    with pytest.raises(TypeError, match="unexpected keyword"):
        app.nap.with_options(gpus="H100")
