"""Documented behaviours that each get a test here: concurrency, env=, map totals, spend(),
the RemoteError fallback, [runtime] url in slipstream.toml, bodies over 1 MiB through shared
memory, the binary channel's idle close and connection cap, and `slipstream logs`."""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
import tomllib

import httpx
import numpy as np
import pytest

import slipstream
from slipstream.protocol.errors import RemoteError, RemoteTraceback
from tests.conftest import REPO, RunningRuntime, start_runtime

# Endpoint names are unique to this file: several projects share the module's runtime.
APP = '''
import os, threading, time
from slipstream import endpoint

_both = threading.Barrier(2, timeout=20)

@endpoint(concurrency=2)
def doc_pair(i):
    _both.wait()  # returns only when a second call runs in the same worker at the same time
    return os.getpid()

@endpoint(env={"DOC_GREETING": "hello from env="})
def doc_env():
    return os.environ.get("DOC_GREETING")

@endpoint
def doc_no_env():
    return os.environ.get("DOC_GREETING")

@endpoint(gpu="H100", workers=(0, 2))
def doc_nap(seconds):
    time.sleep(seconds)
    return seconds

class Picky(Exception):
    """Plain unpickling calls Picky(message) without `b`: the SDK rebuilds it without __init__."""
    def __init__(self, a, b):
        super().__init__(f"picky about {a} and {b}")

@endpoint
def doc_picky():
    raise Picky(1, 2)

@endpoint
def doc_shm(blob):
    """The shared-memory buffers that exist while this call runs, and the body's size."""
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("slipstream-")), len(blob)

@endpoint
def doc_logs(text):
    print(text)
    return text

@endpoint
def doc_quiet(text):
    print(text)
    return text
'''

BOUND_S = 60.0


def _price_per_s(gpu: str) -> float:
    data = tomllib.loads((REPO / "runtime/slipstream/spec/data/gpus.toml").read_text())
    return float(data["gpus"][gpu]["runpod_flex"])


def _stats(rt: RunningRuntime, name: str) -> dict:
    r = httpx.get(
        f"{rt.url}/v1/endpoints/{name}",
        headers={"Authorization": f"Bearer {rt.token}"},
        timeout=BOUND_S,
    )
    assert r.status_code == 200, r.text
    return r.json()["stats"]


@pytest.fixture()
def app(runtime, project_factory):
    return project_factory(runtime, {"doc_app.py": APP}).module("doc_app")


def test_concurrency_runs_calls_at_once_in_one_worker(app):
    with cf.ThreadPoolExecutor(2) as ex:
        pids = list(ex.map(app.doc_pair, range(2)))
    assert pids[0] == pids[1], "both calls ran in the pool's one worker, at the same time"


def test_env_reaches_the_endpoints_workers_only(app):
    assert app.doc_env() == "hello from env="
    assert app.doc_no_env() is None, "another endpoint's workers do not get it"


def test_last_call_after_map_totals_the_items(app, runtime):
    app.doc_nap(0)  # deployed, a worker up
    before = _stats(runtime, "doc_nap")
    assert list(app.doc_nap.map([0.2] * 4)) == [0.2] * 4
    after = _stats(runtime, "doc_nap")
    info = app.doc_nap.last_call
    assert info.calls == 4
    busy = after["busy_s"] - before["busy_s"]  # the runtime's own metering of the same calls
    assert after["calls"] - before["calls"] == 4
    assert info.duration_s == pytest.approx(busy, abs=1e-3) and info.duration_s >= 0.8
    assert info.cost_usd == pytest.approx(busy * _price_per_s("H100"), rel=1e-3)


def test_spend_sums_this_process_calls(app, runtime):
    app.doc_nap(0)
    before, runtime_before = slipstream.spend(), _stats(runtime, "doc_nap")
    for _ in range(3):
        app.doc_nap(0.1)
    after, runtime_after = slipstream.spend(), _stats(runtime, "doc_nap")
    busy = runtime_after["busy_s"] - runtime_before["busy_s"]
    assert after["calls"] - before["calls"] == 3
    assert after["busy_s"] - before["busy_s"] == pytest.approx(busy, abs=1e-3) and busy >= 0.3
    assert after["cost_usd"] - before["cost_usd"] == pytest.approx(
        busy * _price_per_s("H100"), rel=1e-3
    )


def test_an_exception_with_a_custom_init_arrives_as_itself(app):
    with pytest.raises(Exception) as err:
        app.doc_picky()
    assert type(err.value).__module__ == "doc_app" and type(err.value).__name__ == "Picky"
    assert not isinstance(err.value, RemoteError)
    assert str(err.value) == "picky about 1 and 2"
    assert isinstance(err.value.__cause__, RemoteTraceback)
    assert "doc_app.py" in str(err.value.__cause__) and "raise Picky(1, 2)" in str(
        err.value.__cause__
    )


def test_runtime_url_in_slipstream_toml_is_used(runtime, project_factory, monkeypatch):
    proj = project_factory(runtime, {"doc_app.py": APP}, name="cfgproj")
    (proj.root / "slipstream.toml").write_text(
        f'[project]\nname = "cfgproj"\n\n[runtime]\nurl = "{runtime.url}"\ntoken_env = "DOC_RUNTIME_TOKEN"\n'
    )
    monkeypatch.delenv("SLIPSTREAM_RUNTIME_URL")
    monkeypatch.delenv("SLIPSTREAM_TOKEN")
    monkeypatch.setenv("DOC_RUNTIME_TOKEN", runtime.token)
    app = proj.module("doc_app")
    assert app.doc_env() == "hello from env="
    from slipstream.sdk import session

    assert session.current().embedded is None, "no embedded runtime was started"
    assert session.current().client.url.rstrip("/") == runtime.url
    r = httpx.get(
        f"{runtime.url}/v1/endpoints",
        headers={"Authorization": f"Bearer {runtime.token}"},
        timeout=BOUND_S,
    )
    assert any(e.get("project", "").startswith("cfgproj") for e in r.json()["endpoints"]), r.text[
        :300
    ]


@pytest.mark.parametrize("transport", ["data-channel", "http"])
def test_bodies_over_1_mib_travel_through_shared_memory(
    runtime, project_factory, monkeypatch, transport
):
    if transport == "http":
        monkeypatch.setenv("SLIPSTREAM_TRANSPORT", "http")
    app = project_factory(runtime, {"doc_app.py": APP}).module("doc_app")
    tag = "slipstream-q" + runtime.client().health()["runtime_id"][:6]
    small, small_len = app.doc_shm(b"x" * 1000)
    big, big_len = app.doc_shm(np.zeros(2 << 20, dtype=np.uint8).tobytes())
    assert (small_len, big_len) == (1000, 2 << 20)
    assert not [n for n in small if n.startswith(tag)], "a small body goes through the socket"
    assert len([n for n in big if n.startswith(tag)]) == 1, f"a 2 MiB body is in /dev/shm: {big}"
    deadline = time.monotonic() + BOUND_S  # the runtime removes it once the reply is sent
    while [n for n in os.listdir("/dev/shm") if n.startswith(tag)]:
        assert time.monotonic() < deadline, "the buffer is removed after the call"
        time.sleep(0.01)


# --- the binary channel's limits, on a runtime with them scaled down ------------------------


def _serve_with(idle_s: float, max_connections: int) -> RunningRuntime:
    """A real `slipstream serve` whose binary-channel limits (120 s idle, 1,024 connections)
    are scaled down so that reaching them takes a second and a handful of sockets."""
    code = (
        "import sys, slipstream.server.datachannel as dc; "
        f"dc.IDLE_TIMEOUT = {idle_s}; dc.MAX_CONNECTIONS = {max_connections}; "
        "from slipstream.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return start_runtime("--gpu-fallback", launcher=(sys.executable, "-c", code))


def _data_port(rt: RunningRuntime) -> tuple[str, int]:
    return "127.0.0.1", int(rt.client().health()["data_port"])


def _closed_by_peer(s: socket.socket, bound: float) -> bool:
    """True when the other end closes `s` within `bound` seconds (EOF or reset)."""
    readable, _, _ = select.select([s], [], [], bound)
    if not readable:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except ConnectionError:
        return True


def test_an_idle_binary_connection_is_closed_and_the_sdk_reconnects(project_factory):
    rt = _serve_with(idle_s=1.0, max_connections=1024)
    try:
        app = project_factory(rt, {"doc_app.py": APP}, name="idleproj").module("doc_app")
        assert app.doc_env() == "hello from env="
        with socket.create_connection(_data_port(rt), timeout=BOUND_S) as silent:
            started = time.monotonic()
            assert _closed_by_peer(silent, 15), "a connection that sends nothing is closed"
            assert time.monotonic() - started >= 0.9, "after the idle timeout, not at once"
        from slipstream.sdk import session

        data = session.current().client._data_client  # the SDK's pooled connection, idle too
        pooled = data._idle.get_nowait()
        assert _closed_by_peer(pooled, 15), "the runtime closes the SDK's idle pooled connection"
        data._idle.put(pooled)
        assert app.doc_env() == "hello from env=", "the next call reconnects by itself"
    finally:
        rt.stop()


def test_binary_connections_over_the_cap_are_refused_and_freed_slots_reused():
    rt = _serve_with(idle_s=120.0, max_connections=4)
    held: list[socket.socket] = []
    try:
        addr = _data_port(rt)
        held = [socket.create_connection(addr, timeout=BOUND_S) for _ in range(4)]
        with socket.create_connection(addr, timeout=BOUND_S) as fifth:
            assert _closed_by_peer(fifth, 15), "the connection over the cap is closed at once"
        held.pop().close()
        deadline = time.monotonic() + 15
        while True:  # the freed slot is counted back once its thread sees the close
            with socket.create_connection(addr, timeout=BOUND_S) as again:
                if not _closed_by_peer(again, 0.2):
                    break
            assert time.monotonic() < deadline, "a freed slot is never given back"
        for s in held:
            assert not _closed_by_peer(s, 0), "the connections under the cap stay open"
    finally:
        for s in held:
            s.close()
        rt.stop()


# --- slipstream logs -----------------------------------------------------------------------


def test_slipstream_logs_follows_one_endpoints_output(app, runtime):
    marker, other = "doc-logs-" + secrets.token_hex(4), "doc-quiet-" + secrets.token_hex(4)
    app.doc_quiet(other)
    app.doc_logs(marker)
    env = {**os.environ, "SLIPSTREAM_RUNTIME_URL": runtime.url, "SLIPSTREAM_TOKEN": runtime.token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "logs", "doc_logs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    got: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [got.put(line) for line in proc.stdout or ()] + [got.put("")], daemon=True
    ).start()
    try:
        while not any(marker in line for line in lines):
            try:
                line = got.get(timeout=BOUND_S)
            except queue.Empty:
                raise AssertionError(f"no {marker} within {BOUND_S} s: {lines}") from None
            assert line, f"`slipstream logs` ended early: {lines}"
            lines.append(line)
    finally:
        proc.terminate()
        proc.wait(20)
    assert f"[doc_logs] {marker}\n" in lines, lines
    assert not any(other in line for line in lines), "only the named endpoint's lines"


def test_the_readme_tour_runs_as_written_under_slipstream_run(tmp_path):
    """The README's first code block, pasted into a file as a new user does, with a stand-in
    for the model loader it leaves to the user: `slipstream run` runs it (the embedded runtime)."""
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## A one-minute tour", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    stand_in = (
        "def load_pipeline():\n"
        "    return lambda prompt, num_inference_steps: type('Out', (), {'images': [prompt.upper()]})()\n\n"
    )
    first, rest = tour.split("\n", 1)  # the import line stays first
    last = rest.rstrip().splitlines()[-1]
    indent = last[: len(last) - len(last.lstrip())]
    (tmp_path / "tour.py").write_text(
        first + "\n" + stand_in + rest + indent + "print('IMAGES', images)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "tour.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "IMAGES ['A FOX', 'A HERON']" in p.stdout, p.stdout + p.stderr
