"""Endpoint dependencies installed once per set, and workers forked from a warm fork server."""

from __future__ import annotations

import time

import httpx
import pytest

from slipstream.protocol.errors import DeployError

pytestmark = pytest.mark.slow

DEPS = """
import os, sys
from slipstream import endpoint

@endpoint(workers=(0, 2), dependencies=["cowsay==6.1"])
def moo(text, delay=0.0):
    import time, cowsay
    time.sleep(delay)
    return {"said": cowsay.get_output_string("cow", text), "prefix": sys.prefix, "pid": os.getpid(), "v": 1}
"""

BAD = """
from slipstream import endpoint

@endpoint(dependencies=["slipstream-no-such-package-xyz==9.9"])
def broken():
    return 1
"""

HEAVY = """
import torch
from slipstream import endpoint

@endpoint(workers=(0, 2), idle_timeout=0.5)
def tsum(n):
    return float(torch.arange(n).sum())
"""


def _health(rt):
    return httpx.get(f"{rt.url}/health").json()


def _workers(rt, name):
    r = httpx.get(f"{rt.url}/v1/endpoints/{name}", headers={"Authorization": f"Bearer {rt.token}"})
    return r.json()["pool"]["workers"]


def test_dependency_is_installed_once_across_generations_and_workers(runtime, project_factory):
    proj = project_factory(runtime, {"deps.py": DEPS})
    first = proj.sync()
    assert [i["requirements"] for i in first.installs] == [["cowsay==6.1"]]
    app = proj.module("deps")
    outs = list(app.moo.map(["a", "b", "c", "d"], delay=0.3))
    assert all(f"| {t} |" in o["said"] for t, o in zip("abcd", outs, strict=True))
    assert len({o["pid"] for o in outs}) == 2, "two workers share the environment"
    assert (
        len({o["prefix"] for o in outs}) == 1
        and first.installs[0]["environment"] in outs[0]["prefix"]
    )
    installs = _health(runtime)["installs"]
    for v in (2, 3):
        proj.write("deps.py", DEPS.replace('"v": 1', f'"v": {v}'))
        res = proj.sync()
        assert res.installs[0]["cached"] is True, "a later generation reuses the environment"
        assert app.moo("x")["v"] == v
    assert _health(runtime)["installs"] == installs, "nothing installed again"


def test_bad_requirement_is_reported_on_the_decorator_and_old_code_keeps_serving(
    runtime, project_factory
):
    proj = project_factory(runtime, {"deps.py": DEPS})
    proj.sync()
    app = proj.module("deps")
    assert app.moo("ok")["v"] == 1
    proj.write("more.py", BAD)
    with pytest.raises(DeployError) as exc:
        proj.sync()
    assert exc.value.file == "more.py" and exc.value.line == 4
    assert "slipstream-no-such-package-xyz" in str(exc.value)
    assert app.moo("still")["v"] == 1


def test_new_workers_fork_from_a_warm_fork_server(runtime, project_factory):
    proj = project_factory(runtime, {"heavy.py": HEAVY})
    proj.sync()
    app = proj.module("heavy")
    assert app.tsum(10) == 45.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fs = [e["fork_server"] for e in _health(runtime)["environments"] if e["fork_server"]]
        if fs and fs[0]["ready"] and "torch" in fs[0]["preloaded"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the fork server never became ready with torch preloaded")
    from slipstream.sdk import session

    session.current().detach()  # an attached dev session would keep the first worker warm
    while _workers(runtime, "tsum") and time.monotonic() < deadline:
        time.sleep(0.2)  # scale to zero, so the next call needs a new worker
    started = time.perf_counter()
    assert app.tsum(4) == 6.0
    cold = time.perf_counter() - started
    (w,) = _workers(runtime, "tsum")
    assert w["started_by"] == "fork"
    assert w["start_s"] < 2.0 and cold < 5.0, f"forked start {w['start_s']}s, call {cold:.2f}s"


def test_install_progress_reaches_the_caller(runtime, project_factory):
    from slipstream.sdk.sync import sync_project

    proj = project_factory(runtime, {"deps2.py": DEPS.replace("cowsay==6.1", "pyfiglet==1.0.4")})
    lines: list[str] = []
    sync_project(runtime.client(), proj.root, progress=lines.append)
    text = "\n".join(lines)
    assert "installing pyfiglet==1.0.4" in text and "installed pyfiglet==1.0.4" in text
