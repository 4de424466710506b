"""A failed call's HTTP status and error kind as plain HTTP clients (curl) and the SDK's data
channel see them: a timeout is 504 "timeout", a crashed worker 502 "crash", a full queue 429
"overloaded" with Retry-After. The statuses come from ErrorKind (protocol/kinds.py); the data channel carries the kind in
its error record."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import httpx
import pytest

from slipstream.protocol import wire
from tests.conftest import start_runtime
from tests.reliability.helpers import (
    HANG_BOUND_S,
    auth,
    call_json,
    data_call,
    deploy,
    endpoint_info,
    record_error,
    wait_for,
)

APP = '''
import os
import time

from slipstream import endpoint

@endpoint(timeout=1)
def slow(seconds: float = 30.0) -> str:
    time.sleep(seconds)
    return "late"

@endpoint
def die() -> None:
    os._exit(3)

@endpoint(workers=1)
def hold(path: str) -> str:
    """Holds its only worker until the test removes `path`."""
    while os.path.exists(path):
        time.sleep(0.01)
    return "released"
'''


@pytest.fixture(scope="module")
def rt():
    runtime = start_runtime("--gpu-fallback", "--max-queue", "1")
    try:
        deploy(runtime, {"app.py": APP})
        yield runtime
    finally:
        runtime.stop()


def _json_error(r: httpx.Response) -> dict:
    return r.json()["error"]


def test_a_call_past_its_timeout_is_504_timeout(rt):
    r = call_json(rt, "slow")
    assert r.status_code == 504, r.text
    err = _json_error(r)
    assert err["kind"] == "timeout" and err["type"] == "EndpointTimeout", err


def test_a_timeout_in_the_sdk_format_over_http_is_504_timeout(rt):
    r = httpx.post(
        f"{rt.url}/v1/endpoints/slow/call",
        content=wire.dumps_bytes({"args": []}),
        headers={**auth(rt), "content-type": wire.CONTENT_TYPE},
        timeout=HANG_BOUND_S,
    )
    assert r.status_code == 504
    err = record_error(wire.parse_records(r.content))
    assert err["kind"] == "timeout" and err["type"] == "EndpointTimeout", err


def test_the_data_channel_carries_the_kind_in_its_error_record(rt):
    # the data channel answers 200 with the error in the records: the kind is what the SDK reads
    status, records = data_call(
        rt, {"token": rt.token, "endpoint": "die"}, wire.dumps_bytes({"args": []})
    )
    assert status == 200
    err = record_error(records)
    assert err["kind"] == "crash" and err["type"] == "WorkerCrashed", err


def test_a_crashed_worker_is_502_crash(rt):
    r = call_json(rt, "die")
    assert r.status_code == 502, r.text
    err = _json_error(r)
    assert err["kind"] == "crash" and err["type"] == "WorkerCrashed", err


def test_a_full_queue_is_429_overloaded_with_retry_after(rt, tmp_path: Path):
    gate = tmp_path / "gate"
    gate.touch()
    with cf.ThreadPoolExecutor(2) as ex:
        try:
            running = ex.submit(call_json, rt, "hold", {"kwargs": {"path": str(gate)}})
            wait_for(
                lambda: any(w["inflight"] for w in endpoint_info(rt, "hold")["pool"]["workers"]),
                "the first call to run",
            )
            queued = ex.submit(call_json, rt, "hold", {"kwargs": {"path": str(gate)}})
            wait_for(
                lambda: endpoint_info(rt, "hold")["pool"]["queued"] == 1, "the second call to queue"
            )
            r = httpx.post(
                f"{rt.url}/v1/endpoints/hold/call",
                json={"kwargs": {"path": str(gate)}},
                headers=auth(rt),
                timeout=HANG_BOUND_S,
            )
        finally:
            gate.unlink()
        assert r.status_code == 429, r.text
        assert r.headers.get("retry-after") == "1"
        err = _json_error(r)
        assert err["kind"] == "overloaded" and err["type"] == "Overloaded", err
        assert running.result().json()["result"] == "released"
        assert queued.result().json()["result"] == "released"
