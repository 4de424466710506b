"""Calling endpoints on a real runtime: functions, classes, map, generators, errors, metering."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

APP = """
import os, time
from slipstream import endpoint

class PromptTooLong(ValueError):
    pass

@endpoint(gpu="H100")
def add(a, b=0):
    print("adding", a, b)
    return a + b

@endpoint(gpu="H100")
def nap(seconds):
    time.sleep(seconds)
    return seconds

@endpoint(workers=(0, 3))
def slow_pid(x, delay=0.4):
    time.sleep(delay)
    return (x, os.getpid())

@endpoint
class Counter:
    def setup(self):
        self.setups = getattr(self, "setups", 0) + 1
        self.n = 0
    def bump(self, k=1):
        self.n += k
        return {"n": self.n, "setups": self.setups, "pid": os.getpid()}
    def _private(self):
        return "hidden"

@endpoint
def ticks(n, delay=0.0):
    for i in range(n):
        yield i
        time.sleep(delay)

@endpoint
def check_prompt(prompt):
    if len(prompt) > 5:
        raise PromptTooLong(f"prompt of {len(prompt)} chars is too long")
    return prompt

@endpoint
def echo(x):
    return x

@endpoint
async def async_double(x):
    return 2 * x
"""


@pytest.fixture()
def app(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": APP})
    return proj.module("app")


def _h100_price_per_s() -> float:
    """Read from the catalog's data file here, not through the code under test."""
    data = tomllib.loads((REPO / "runtime/slipstream/spec/data/gpus.toml").read_text())
    return float(data["gpus"]["H100"]["runpod_flex"])


def test_function_call_returns_result_and_cost(app):
    assert app.add(2, b=3) == 5
    assert app.add.last_call.gpu == "H100"
    app.nap(0)  # the worker is up: the timing below is the call's own
    started = time.perf_counter()
    assert app.nap(0.3) == 0.3
    wall = time.perf_counter() - started
    info = app.nap.last_call
    price = _h100_price_per_s()
    assert info.gpu == "H100" and info.calls == 1
    # busy seconds: at least the sleep the worker did, at most what the caller waited
    assert 0.3 <= info.duration_s <= wall, (info.duration_s, wall)
    assert 0.3 * price <= info.cost_usd <= wall * price, (info.cost_usd, wall * price)


def test_remote_print_reaches_the_caller(app, capsys):
    app.add(7, 1)
    assert "adding 7 1" in capsys.readouterr().out


def test_local_runs_in_process(app):
    assert app.add.local(1, 2) == 3
    assert app.Counter().bump.local(2)["n"] == 2


def test_class_endpoint_runs_setup_once_per_worker(app):
    c = app.Counter()
    first = c.bump(1)
    second = c.bump(2)
    assert first["setups"] == 1 and second["setups"] == 1
    assert second["n"] == 3 and first["pid"] == second["pid"]


def test_private_methods_are_not_callable(app):
    with pytest.raises(AttributeError):
        app.Counter()._private()


def test_map_keeps_order_and_fans_out(app):
    list(
        app.slow_pid.map(range(3), delay=0.3)
    )  # bring three workers up, so the timing below is the map's own
    started = time.perf_counter()
    out = list(app.slow_pid.map(range(6), delay=0.4))
    elapsed = time.perf_counter() - started
    assert [x for x, _ in out] == list(range(6))
    assert len({pid for _, pid in out}) >= 2, "map should spread over several workers"
    assert elapsed < 6 * 0.4, "map ran one item at a time"


def test_generator_streams_items_as_produced(app):
    started = time.perf_counter()
    it = app.ticks(3, delay=0.6)
    first = next(it)
    first_at = time.perf_counter() - started
    rest = list(it)
    assert [first, *rest] == [0, 1, 2]
    assert first_at < 1.0, f"first item came after {first_at:.2f}s: not streamed"


def test_remote_exception_keeps_type_and_user_line(app):
    with pytest.raises(ValueError) as exc:
        app.check_prompt("far too long")
    assert type(exc.value).__name__ == "PromptTooLong"
    tb = str(exc.value.__cause__)
    assert "app.py" in tb and "raise PromptTooLong" in tb
    assert "line " in tb


def test_wrong_arguments_are_a_type_error(app):
    with pytest.raises(TypeError, match="unexpected keyword"):
        app.add(1, nope=2)


def test_large_array_round_trips_intact(app):
    arr = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    back = app.echo(arr)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_aio_call(app):
    async def go():
        return await asyncio.gather(app.add.aio(1, 1), app.async_double.aio(21))

    assert asyncio.run(go()) == [2, 42]


@pytest.mark.parametrize("transport", ["data-channel", "http"])
def test_both_transports_carry_calls_errors_and_large_arrays(
    runtime, project_factory, monkeypatch, transport
):
    if transport == "http":
        monkeypatch.setenv("SLIPSTREAM_TRANSPORT", "http")
    app = project_factory(runtime, {"app2.py": APP}).module("app2")
    arr = np.arange(3_000_000, dtype=np.int64)  # 24 MB: travels through shared memory
    assert np.array_equal(app.echo(arr), arr)
    assert app.add(1, 2) == 3
    with pytest.raises(ValueError):
        app.check_prompt("much too long")


def test_data_channel_refuses_a_wrong_token(runtime, project_factory):
    from slipstream.protocol import wire
    from slipstream.protocol.errors import ErrorInfo
    from slipstream.sdk.datachannel import DataClient

    project_factory(runtime, {"app3.py": APP}).sync()
    port = runtime.client().health()["data_port"]
    status, body = DataClient("127.0.0.1", port, "not-the-token").call(
        "add", None, wire.dumps({"args": [1, 2], "kwargs": {}}), 10
    )
    assert status == 401
    from slipstream.protocol.wire import parse_records

    ((kind, payload),) = parse_records(body)
    assert (
        kind == wire.REC_ERROR
        and "token" in ErrorInfo.from_dict(__import__("json").loads(bytes(payload))).message
    )


NESTED = """
import os, time
from slipstream import endpoint

@endpoint
def inner(x):
    return x * 2

@endpoint
def outer(x, started=None, release=None):
    if started:  # say it runs, then wait until the test has synced new code
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return inner(x) + 1
"""


def test_a_nested_call_from_old_code_never_rolls_the_runtime_back(
    runtime, project_factory, tmp_path
):
    import concurrent.futures as cf

    proj = project_factory(runtime, {"nested.py": NESTED})
    app = proj.module("nested")
    started, release = tmp_path / "started", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(app.outer, 20, str(started), str(release))
        deadline = time.monotonic() + 60
        while not started.exists():  # it runs on the first version of the code...
            assert time.monotonic() < deadline and not inflight.done(), inflight
            time.sleep(0.01)
        proj.write("nested.py", NESTED.replace("x * 2", "x * 3"))
        res = proj.sync()  # ...while the runtime moves on to the second
        assert not inflight.done(), "the outer call was still running during the sync"
        release.touch()
        assert inflight.result(timeout=60) == 61, "its nested call reaches the current code"
    assert proj.sync().generation == res.generation, "the nested call synced nothing back"
    assert app.inner(20) == 60, "and the runtime still runs the second version"
