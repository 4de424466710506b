"""Calls whose caller went away are cancelled; workers never outlive their runtime.

Against a real `slipstream serve` (and `slipstream run`) with real worker processes: a client
process killed (SIGKILL) or interrupted (SIGINT, i.e. Ctrl-C) mid-call, a client-side timeout
(asyncio and plain HTTP), a call that ignores the interrupt, a SIGKILLed runtime. "Running" is
known from a marker file the call writes when it starts (holding its worker's pid); "never ran"
is known by a later call on the same one-worker pool finishing first (the pool is FIFO).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_runtime, write_project
from tests.reliability.helpers import HANG_BOUND_S, auth, endpoint_info, log_lines, wait_for

APP = '''
import os, time
from pathlib import Path
from slipstream import endpoint

def _started(marker):
    if marker:
        Path(marker).write_text(str(os.getpid()))

@endpoint(workers=(0, 1))
def slow(seconds, marker=""):
    _started(marker)
    try:
        time.sleep(seconds)
    except BaseException as exc:
        if marker:
            Path(marker + ".stopped").write_text(type(exc).__name__)
        raise
    return "finished"

@endpoint(workers=(0, 1))
def slow_at(marker, seconds=120):
    """slow with the marker first, for .map"""
    _started(marker)
    time.sleep(seconds)
    return "finished"

@endpoint(workers=(0, 1))
async def aslow(seconds, marker=""):
    import asyncio
    _started(marker)
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if marker:
            Path(marker + ".stopped").write_text(type(exc).__name__)
        raise
    return "finished"

@endpoint(workers=(0, 1), concurrency=2)
def busy(seconds, marker=""):
    """Pure Python work on one of the worker's call threads (concurrency > 1)."""
    _started(marker)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            pass
    except BaseException as exc:
        if marker:
            Path(marker + ".stopped").write_text(type(exc).__name__)
        raise
    return os.getpid()

@endpoint(workers=(0, 1))
def stubborn(seconds, marker=""):
    """Swallows every interrupt and keeps going."""
    _started(marker)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.02)
        except BaseException:
            pass
    return os.getpid()
'''

CLIENT = """
import sys, threading, time
from pathlib import Path
from app import slow, slow_at

running, queued, how = sys.argv[1:4]
if how == "map":  # .map over two items: the first runs, the second queues behind it
    list(slow_at.map([running, queued]))
else:
    threading.Thread(target=slow, args=(120, running), daemon=True).start()
    while not Path(running).exists():
        time.sleep(0.01)
    slow(120, queued)  # queued behind the first on the one-worker pool
"""

# Prompt means: far sooner than the cancelled call (120 s) would have taken.
PROMPT_S = 20.0


@pytest.fixture(scope="module")
def rt():
    r = start_runtime("--gpu-fallback", "--cancel-grace", "1")
    yield r
    r.stop()


@pytest.fixture()
def proj(rt, project_factory):
    return project_factory(rt, {"app.py": APP, "client.py": CLIENT})


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a reaped-later corpse has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def warm(app, name: str = "slow") -> None:
    """A worker up and idle, so that a call starts at once."""
    getattr(app, name)(0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how,calls",
    [(signal.SIGKILL, "threads"), (signal.SIGINT, "threads"), (signal.SIGINT, "map")],
    ids=["killed", "ctrl-c", "ctrl-c-in-map"],
)
def test_a_gone_clients_running_call_is_interrupted_and_its_queued_call_never_runs(
    rt, proj, tmp_path, how, calls
):
    app = proj.module("app")
    name = "slow_at" if calls == "map" else "slow"
    warm(app, name) if calls != "map" else app.slow_at("", seconds=0)
    running, queued = tmp_path / "running", tmp_path / "queued"
    env = {**os.environ, "SLIPSTREAM_RUNTIME_URL": rt.url, "SLIPSTREAM_TOKEN": rt.token}
    client = subprocess.Popen(
        [sys.executable, "client.py", str(running), str(queued), calls],
        cwd=proj.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: running.exists() or queued.exists() or client.poll() is not None,
            "the client's first call to start",
        )
        assert client.poll() is None, client.communicate()
        if queued.exists():  # .map sends its items from threads: either may reach the runtime first
            running, queued = queued, running
        wait_for(
            lambda: endpoint_info(rt, name)["pool"]["queued"] == 1,
            "the client's second call to queue",
        )
        before = endpoint_info(rt, name)["stats"]["cancelled"]
        signalled = time.monotonic()
        client.send_signal(how)
        client.wait(
            HANG_BOUND_S
        )  # Ctrl-C ends the client at once, not when its calls would have ended
    finally:
        client.kill()
    if calls != "map":  # (slow_at does not report how it stopped)
        stopped = wait_for(
            lambda: (
                Path(str(running) + ".stopped").exists()
                and Path(str(running) + ".stopped").read_text()
            ),
            "the running call to be interrupted",
        )
        assert stopped == "CallCancelled", (
            "the running call is interrupted with CallCancelled raised inside it"
        )
    started = time.monotonic()
    assert (app.slow_at("", seconds=0) if calls == "map" else app.slow(0)) == "finished"
    assert time.monotonic() - started < PROMPT_S, (
        "the next call must not wait behind the cancelled one"
    )
    print(
        f"\n[figure] {calls}, client {signal.Signals(how).name}: next call answered "
        f"{(time.monotonic() - signalled) * 1000:.0f} ms after the signal"
    )
    assert not queued.exists(), (
        "the gone client's queued call must never run",
        log_lines(rt, name)[-12:],
    )
    info = endpoint_info(rt, name)
    assert info["stats"]["cancelled"] - before == 2 and info["pool"]["queued"] == 0
    assert [w["pid"] for w in info["pool"]["workers"]] == [int(running.read_text())], (
        "interrupted, not replaced"
    )
    lines = log_lines(rt, name)
    assert any("cancelled before it started" in ln for ln in lines), lines[-10:]
    assert any("interrupting it on worker" in ln for ln in lines), lines[-10:]
    metrics = httpx.get(f"{rt.url}/metrics", headers=auth(rt), timeout=HANG_BOUND_S).text
    row = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("slipstream_cancelled_total") and f'endpoint="{name}"' in ln
    )
    assert float(row.rsplit(" ", 1)[1]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["aio", "http"])
def test_a_client_side_timeout_cancels_the_call(rt, proj, tmp_path, transport):
    app = proj.module("app")
    warm(app)
    marker = tmp_path / "timed-out"
    if transport == "aio":

        async def main():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(app.slow.aio(120, marker=str(marker)), 3)

        asyncio.run(main())
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{rt.url}/v1/projects/{proj_key(proj)}/endpoints/slow/call",
                json={"args": [120, str(marker)]},
                headers=auth(rt),
                timeout=httpx.Timeout(HANG_BOUND_S, read=3),
            )
    assert marker.exists(), "the call had started before the client gave up"
    stopped = wait_for(
        lambda: (
            Path(str(marker) + ".stopped").exists() and Path(str(marker) + ".stopped").read_text()
        ),
        "the timed-out call to be interrupted",
    )
    assert stopped == "CallCancelled"
    started = time.monotonic()
    assert app.slow(0) == "finished" and time.monotonic() - started < PROMPT_S


def _time_out_aio(call, marker: Path, what: str) -> str:
    """`call.aio(120, marker=...)` given up after 3 s by asyncio.wait_for; what the call on the
    worker saw when it stopped (it writes the exception's name to <marker>.stopped)."""

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call.aio(120, marker=str(marker)), 3)

    asyncio.run(main())
    stopped = Path(str(marker) + ".stopped")
    return wait_for(lambda: stopped.exists() and stopped.read_text(), what)


@pytest.mark.slow
def test_a_call_on_a_worker_thread_is_interrupted_too(rt, proj, tmp_path):
    """concurrency > 1: calls run on threads, and the interrupt lands at the next Python line."""
    app = proj.module("app")
    pid = app.busy(0)
    stopped = _time_out_aio(
        app.busy, tmp_path / "busy", "the call on the worker thread to be interrupted"
    )
    assert stopped == "CallCancelled"
    assert app.busy(0) == pid, "interrupted in place: the same worker serves on"
    assert endpoint_info(rt, "busy")["stats"]["cancel_kills"] == 0


@pytest.mark.slow
def test_an_async_endpoint_is_interrupted_in_its_event_loop(rt, proj, tmp_path):
    app = proj.module("app")
    assert app.aslow(0) == "finished"
    stopped = _time_out_aio(app.aslow, tmp_path / "aslow", "the async call to be interrupted")
    assert stopped == "CancelledError", (
        stopped
    )  # the loop stops, and asyncio cancels its task: the idiom for async code
    started = time.monotonic()
    assert app.aslow(0) == "finished" and time.monotonic() - started < PROMPT_S
    assert endpoint_info(rt, "aslow")["stats"]["cancel_kills"] == 0


def proj_key(proj) -> str:
    from slipstream.sdk.config import project_key

    return project_key(proj.root)


@pytest.mark.slow
def test_a_call_that_ignores_the_interrupt_is_replaced_after_the_grace_period(rt, proj, tmp_path):
    app = proj.module("app")
    warm(app, "stubborn")
    marker = tmp_path / "stubborn"
    before = endpoint_info(rt, "stubborn")["stats"]

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(app.stubborn.aio(120, marker=str(marker)), 3)

    asyncio.run(main())
    old = int(marker.read_text())
    started = time.monotonic()
    new = app.stubborn(0)  # waits for the grace period (1 s here), then runs on a fresh worker
    assert time.monotonic() - started < PROMPT_S
    print(
        f"\n[figure] stuck call, grace 1 s: next call answered in {(time.monotonic() - started) * 1000:.0f} ms"
    )
    assert new != old, "the stuck worker must be replaced"
    wait_for(lambda: not alive(old), "the stuck worker to be gone")
    after = endpoint_info(rt, "stubborn")["stats"]
    assert (
        after["cancel_kills"] - before["cancel_kills"] == 1
        and after["cancelled"] - before["cancelled"] == 1
    )
    assert any(
        "did not stop cancelled call" in ln and "replacing it" in ln
        for ln in log_lines(rt, "stubborn")
    )


@pytest.mark.slow
def test_a_sigkilled_runtime_leaves_no_worker(tmp_path):
    r = start_runtime("--gpu-fallback")
    try:
        root = write_project(tmp_path / "orphans", {"app.py": APP})
        client = r.client()
        client.sync(root)
        marker = tmp_path / "busy"
        # one worker busy in a call, one idle (another pool), and the fork server
        client.call_json("stubborn", {"seconds": 0})
        busy = threading.Thread(
            target=lambda: _swallow(
                lambda: client.call_json("slow", {"seconds": 120, "marker": str(marker)})
            ),
            daemon=True,
        )
        busy.start()
        wait_for(marker.exists, "the busy call to start")
        workers = descendants(r.proc.pid)
        assert int(marker.read_text()) in workers and len(workers) >= 2, workers
        killed = time.monotonic()
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait(HANG_BOUND_S)
        wait_for(
            lambda: not any(alive(p) for p in workers),
            f"workers {sorted(workers)} to die with their runtime",
            bound=15,
        )
        print(
            f"\n[figure] runtime SIGKILLed: {len(workers)} processes gone in {(time.monotonic() - killed) * 1000:.0f} ms"
        )
        busy.join(HANG_BOUND_S)
    finally:
        r.stop()


def _swallow(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - the runtime under it is killed on purpose
        pass


RUN_SCRIPT = """
from app import slow
print("calling", flush=True)
print(slow(120, MARKER))
"""


@pytest.mark.slow
def test_ctrl_c_under_slipstream_run_stops_everything_and_leaves_no_temp_files(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    marker = tmp_path / "run-marker"
    root = write_project(
        tmp_path / "runproj",
        {"app.py": APP, "main.py": RUN_SCRIPT.replace("MARKER", repr(str(marker)))},
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    env["TMPDIR"] = str(temp)  # everything slipstream puts in temp folders lands here
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "main.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker.exists, "the script's call to start", bound=120)
        tree = descendants(proc.pid)
        worker = int(marker.read_text())
        assert worker in tree and len(tree) >= 2, (
            "the embedded runtime and its worker run under `slipstream run`"
        )
        assert os.listdir(temp), "the runtime keeps its store in the temp folder while it runs"
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_BOUND_S)
        print(
            f"\n[figure] slipstream run, Ctrl-C: exited in {(time.monotonic() - interrupted) * 1000:.0f} ms"
        )
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert "finished" not in out
    wait_for(
        lambda: not any(alive(p) for p in tree),
        f"{sorted(tree)} (runtime, fork server, worker) to be gone",
        bound=15,
    )
    assert os.listdir(temp) == [], "nothing is left in the temp folder"


QUICK_SCRIPT = """
from app import slow
print(slow(0))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["slipstream run", "python"])
def test_a_finished_script_leaves_nothing_in_the_temp_folder(tmp_path, how):
    """`slipstream run main.py`, and `python main.py` (the SDK starts the embedded runtime)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    root = write_project(tmp_path / "quick", {"app.py": APP, "main.py": QUICK_SCRIPT})
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    env["TMPDIR"] = str(temp)
    cmd = (
        [sys.executable, "-m", "slipstream", "run", "main.py"]
        if how != "python"
        else [sys.executable, "main.py"]
    )
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "finished" in p.stdout, p.stderr
    assert os.listdir(temp) == [], "nothing is left in the temp folder"


@pytest.mark.slow
def test_a_second_ctrl_c_while_slipstream_run_stops_is_no_traceback(tmp_path):
    """An impatient user presses Ctrl-C twice: the second lands while the embedded runtime
    stops. Stopping goes on (bounded), the exit is the same 130 with the one 'interrupted'
    line, and nothing is left running."""
    marker = tmp_path / "run-marker"
    root = write_project(
        tmp_path / "runproj",
        {"app.py": APP, "main.py": RUN_SCRIPT.replace("MARKER", repr(str(marker)))},
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "main.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker.exists, "the script's call to start", bound=120)
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)  # the first Ctrl-C is being handled: the runtime is stopping
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_BOUND_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("slipstream: interrupted: the script's remote calls were cancelled")
    ), err
    wait_for(
        lambda: not any(alive(p) for p in tree),
        f"{sorted(tree)} (runtime, fork server, worker) to be gone",
        bound=15,
    )
