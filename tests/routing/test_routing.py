"""Several runtimes at once: [runtimes] in slipstream.toml routes each endpoint to the runtime
that has its GPU, CPU endpoints to the embedded one, runtime= pins; nested calls cross runtimes.

Two real runtimes on loopback: "gpu-box" (a `slipstream serve` that believes it has an H100,
SLIPSTREAM_FAKE_GPUS) and the embedded runtime the script's SDK starts itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, start_runtime

APP = """
import json, os, sys
from slipstream import endpoint

def where():
    return os.environ["SLIPSTREAM_RUNTIME_URL"]

@endpoint(gpu="H100")
def big(x: int) -> dict:
    return {"at": where(), "x": x}

@endpoint()
def small(x: int) -> dict:
    return {"at": where(), "x": x}

@endpoint(gpu=["A100-80GB", "H100"])
def fallback() -> str:
    return where()

@endpoint(gpu="H100")
def big_calls_small(x: int) -> dict:
    return {"at": where(), "inner": small(x + 1)}

@endpoint()
def small_calls_big(x: int) -> dict:
    return {"at": where(), "inner": big(x + 1)}

@endpoint(runtime="gpu-box")
def pinned() -> str:
    return where()

@endpoint(gpu="B200")
def nowhere() -> str:
    return where()

if __name__ == "__main__":
    out = {}
    for name, fn, args in [("big", big, (1,)), ("small", small, (2,)), ("fallback", fallback, ()),
                           ("big_calls_small", big_calls_small, (3,)), ("small_calls_big", small_calls_big, (4,)),
                           ("pinned", pinned, ())]:
        out[name] = fn(*args)
    t0 = __import__("time").monotonic()
    try:
        nowhere()
    except Exception as exc:
        out["nowhere"] = {"type": type(exc).__name__, "message": str(exc), "s": __import__("time").monotonic() - t0}
    print("RESULT " + json.dumps(out), flush=True)
"""


def _write(root: Path, toml: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "slipstream.toml").write_text(textwrap.dedent(toml))
    (root / "app.py").write_text(APP)
    return root


def _run(root: Path, env: dict[str, str], timeout: float = 240) -> tuple[dict, str]:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "runtime"), str(REPO / "daemon"), full.get("PYTHONPATH", "")]
    )
    p = subprocess.run(
        [sys.executable, "app.py"],
        cwd=root,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, f"script failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return json.loads(line[len("RESULT ") :]), p.stderr


@pytest.fixture(scope="module")
def gpu_box():
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100"})
    yield rt
    rt.stop()


@pytest.mark.slow
def test_endpoints_route_by_gpu_across_two_runtimes(tmp_path: Path, gpu_box) -> None:
    root = _write(
        tmp_path / "proj",
        f'''
        [project]
        name = "routed"

        [runtimes.gpu-box]
        url = "{gpu_box.url}"
        token_env = "GPU_BOX_TOKEN"
    ''',
    )
    out, err = _run(root, {"GPU_BOX_TOKEN": gpu_box.token})
    local = out["small"]["at"]
    assert local != gpu_box.url and local.startswith(
        "http://127.0.0.1:"
    )  # the embedded runtime the script started
    assert out["big"] == {
        "at": gpu_box.url,
        "x": 1,
    }  # the H100 endpoint ran on the runtime with the H100
    assert out["fallback"] == gpu_box.url  # no A100 anywhere: the fallback list's H100 on gpu-box
    assert out["pinned"] == gpu_box.url  # a CPU endpoint pinned with runtime="gpu-box"
    # nested calls cross runtimes both ways, each landing where the client would have sent it
    assert out["big_calls_small"] == {"at": gpu_box.url, "inner": {"at": local, "x": 4}}
    assert out["small_calls_big"] == {"at": local, "inner": {"at": gpu_box.url, "x": 5}}
    # no runtime has a B200: the call fails at once, saying what each runtime has
    nowhere = out["nowhere"]
    assert nowhere["type"] == "NoRuntimeForGpu"
    assert "asks for B200 but no runtime has it" in nowhere["message"]
    assert "gpu-box has H100" in nowhere["message"] and "local has no GPU" in nowhere["message"]
    assert nowhere["s"] < 1.0


@pytest.mark.slow
def test_status_shows_every_runtime(tmp_path: Path, gpu_box) -> None:
    """`slipstream status` in a project with [runtimes]: each runtime's address, GPUs,
    the project's endpoints routed there and its spend; one that does not answer is offline
    with its declared GPUs."""
    root = _write(
        tmp_path / "proj",
        f'''
        [project]
        name = "routed-status"

        [runtimes.gpu-box]
        url = "{gpu_box.url}"
        token_env = "GPU_BOX_TOKEN"

        [runtimes.spare]
        url = "http://127.0.0.1:9"
        gpus = ["A100-80GB:2"]
    ''',
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    env.update(GPU_BOX_TOKEN=gpu_box.token, PYTHONPATH=str(REPO / "runtime"))
    _run(
        root, {"GPU_BOX_TOKEN": gpu_box.token}
    )  # deploys and calls, so gpu-box has spend for this project
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    box = next(ln for ln in lines if ln.startswith("gpu-box"))
    assert gpu_box.url in box and "H100" in box and "connected" in box
    spare = next(ln for ln in lines if ln.startswith("spare"))
    assert "offline" in spare and "2×A100-80GB (declared)" in spare
    local = next(ln for ln in lines if ln.startswith("local"))
    assert "embedded" in local

    # each endpoint is listed under the runtime that serves it
    def routed_to(name: str) -> set[str]:
        i = next(i for i, ln in enumerate(lines) if ln.startswith(name))
        j = next(
            (k for k in range(i + 1, len(lines)) if lines[k] and not lines[k].startswith(" ")),
            len(lines),
        )
        return {ln.split()[0] for ln in lines[i + 1 : j]}

    assert routed_to("gpu-box") == {"big", "big_calls_small", "fallback", "pinned"}
    assert routed_to("local") == {"small", "small_calls_big"}
    assert routed_to("spare") == {
        "no"
    }  # "no endpoint routed here": offline, and gpu-box has the H100 the fallback list takes
    assert re.search(
        r"^nowhere +B200: no runtime has it \(gpu-box has H100; spare has 2×A100-80GB .*local has no GPU\)",
        p.stdout,
        re.M,
    )
    spend = float(box.rsplit("$", 1)[1].split()[0])
    assert spend > 0  # H100 calls were metered on gpu-box


def test_bad_runtimes_table_says_what_to_write(tmp_path: Path) -> None:
    from slipstream.sdk.config import load_project
    from slipstream.sdk.routing import RoutingError, load_runtimes

    cases = {
        '[runtimes.box]\ngpus = ["H100"]\n': "url is missing",
        '[runtimes.box]\nurl = "ftp://box"\n': "write http://host:port",
        '[runtimes.box]\nurl = "ssh://box"\ngpus = ["H1OO"]\n': "unknown GPU 'H1OO' (did you mean H100",
        '[runtimes.box]\nurl = "ssh://box"\ngpu = ["H100"]\n': "unknown key gpu (known: url, gpus, token_env)",
        '[runtimes.a]\nurl = "embedded"\n[runtimes.b]\nurl = "embedded"\n': "more than one runtime",
    }
    for text, expected in cases.items():
        (tmp_path / "slipstream.toml").write_text(text)
        with pytest.raises(RoutingError) as info:
            load_runtimes(load_project(tmp_path))
        assert expected in str(info.value), text
        assert "slipstream.toml" in str(info.value)


def test_route_rules() -> None:
    """The fallback list is tried in order over all runtimes; answers beat declarations."""
    from slipstream.sdk.routing import NoRuntimeForGpu, Router, RoutingError, RuntimeEntry

    a = RuntimeEntry("a", "ssh://a", declared=("A100-80GB",))
    b = RuntimeEntry("b", "https://b", declared=("H100", "H100"))
    local = RuntimeEntry("local", "embedded", implicit=True)
    asked: list[str] = []

    def ask(rt: RuntimeEntry) -> None:  # each answers with what it declares
        asked.append(rt.name)
        rt.reported = list(rt.declared)

    r = Router([a, b, local], ask=ask)
    assert r.route(["H100", "A100-80GB"]).runtime is b  # H100 anywhere before the A100 on the first
    assert r.route(["A100-80GB", "H100"]).runtime is a
    assert r.route("H100:2").runtime is b and r.route("H100:2").gpu == "H100:2"
    assert r.route(()).runtime is local and r.route(()).gpu == "CPU"
    assert r.route((), pinned="a").runtime is a
    with pytest.raises(RoutingError, match="no runtime named 'c'"):
        r.route((), pinned="c")
    with pytest.raises(
        NoRuntimeForGpu,
        match=r"H100:4 but no runtime has it: a has A100-80GB; b has 2×H100; local has no GPU\.",
    ):
        r.route("H100:4", name="big")
    assert sorted(asked) == ["a", "b", "local"]  # each asked once, however often routed
    b.reported = ["L4"]  # b answered: what it reports wins over what was declared
    r2 = Router([a, b, local])
    with pytest.raises(NoRuntimeForGpu, match="b has L4;"):
        r2.route("H100")
    # a runtime that was asked and did not answer is passed over while one that answered has a
    # GPU of the list; it is chosen only when nothing else has one (the call then says it is offline)
    down = RuntimeEntry("down", "ssh://down", declared=("A100-80GB",))
    up = RuntimeEntry("up", "https://up")
    r3 = Router(
        [down, up, RuntimeEntry("local", "embedded")],
        ask=lambda rt: setattr(rt, "reported", ["H100"]) if rt.name == "up" else None,
    )
    assert r3.route(["A100-80GB", "H100"]).runtime is up
    assert r3.route("A100-80GB").runtime is down


DEV_APP = """
import os
from slipstream import endpoint

@endpoint(gpu="H100")
def big(x: int) -> str:
    return "big " + os.environ["SLIPSTREAM_RUNTIME_URL"]

@endpoint()
def small(x: int) -> str:
    return "small " + os.environ["SLIPSTREAM_RUNTIME_URL"]
"""


@pytest.mark.slow
def test_dev_serves_each_endpoint_from_its_runtime_and_a_save_reloads_all(
    tmp_path: Path, gpu_box
) -> None:
    """`slipstream dev` with [runtimes]: each route calls the endpoint's runtime, and one save
    hot-reloads the code on every runtime serving an endpoint."""
    import socket

    import httpx

    root = tmp_path / "devproj"
    root.mkdir()
    (root / "slipstream.toml").write_text(
        f'[project]\nname = "routed-dev"\n\n[runtimes.gpu-box]\nurl = "{gpu_box.url}"\ntoken_env = "GPU_BOX_TOKEN"\n'
    )
    (root / "app.py").write_text(DEV_APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    env.update(
        GPU_BOX_TOKEN=gpu_box.token,
        PYTHONPATH=os.pathsep.join([str(REPO / "runtime"), env.get("PYTHONPATH", "")]),
    )
    log = tmp_path / "dev.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answer(name: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = httpx.post(f"{url}/{name}", json={"x": 1}, timeout=30)
                if r.status_code == 200:
                    return r.json()["result"]
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    try:
        assert answer("big") == f"big {gpu_box.url}"
        local = answer("small").removeprefix("small ")
        assert local.startswith("http://127.0.0.1:") and local != gpu_box.url
        (root / "app.py").write_text(
            DEV_APP.replace('"big "', '"BIG "').replace('"small "', '"SMALL "')
        )
        deadline = time.monotonic() + 60
        while answer("big") != f"BIG {gpu_box.url}" or answer("small") != f"SMALL {local}":
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "live on " in log.read_text()  # the reload line names the runtimes it reached
    finally:
        proc.terminate()
        proc.wait(20)
