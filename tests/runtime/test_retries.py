"""Retries against a real runtime with real worker processes: a crashed worker's call runs again
and succeeds, a timed-out one too; the user's own exceptions are never retried unless named;
every retry shows in the logs, the endpoint's stats and /metrics."""

from __future__ import annotations

import httpx
import pytest

from slipstream import Retries
from slipstream.protocol.errors import WorkerCrashed
from slipstream.spec.endpoint_spec import SpecError
from tests.reliability.helpers import HANG_BOUND_S, auth, endpoint_info, log_lines

APP = """
import os, time
from pathlib import Path
from slipstream import endpoint, Retries

def _attempt(path):
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n

@endpoint(workers=1, retries=Retries(2, backoff=0.1))
def crash_once(path: str) -> str:
    if _attempt(path) == 1:
        os._exit(3)  # the worker dies mid-call
    return f"ok on attempt {Path(path).read_text()}"

@endpoint(workers=1)
def crash_no_retries(path: str) -> str:
    _attempt(path)
    os._exit(3)

@endpoint(workers=1, timeout=1, retries=1)
def slow_once(path: str) -> int:
    if _attempt(path) == 1:
        time.sleep(30)
    return 7

@endpoint(workers=1, retries=3)
def user_error(path: str) -> None:
    raise ValueError(f"attempt {_attempt(path)}")

@endpoint(workers=1, retries=Retries(3, backoff=0, on=(KeyError,)))
def named_error(path: str) -> int:
    n = _attempt(path)
    if n < 3:
        raise KeyError(n)
    return n
"""


@pytest.fixture()
def app(runtime, project_factory):
    return project_factory(runtime, {"retry_app.py": APP}).module("retry_app")


def _stats(rt, name: str) -> dict:
    return endpoint_info(rt, name)["stats"]


def test_a_call_whose_worker_crashed_is_retried_and_succeeds(app, runtime, tmp_path):
    path = tmp_path / "crash"
    assert app.crash_once(str(path)) == "ok on attempt 2"
    stats = _stats(runtime, "crash_once")
    assert stats["retries"] == 1 and stats["crashes"] == 1
    assert any(
        "retry 1 of 2" in ln and "exited with code 3" in ln
        for ln in log_lines(runtime, "crash_once", backlog=500)
    )
    metrics = httpx.get(f"{runtime.url}/metrics", headers=auth(runtime), timeout=HANG_BOUND_S).text
    row = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("slipstream_retries_total") and 'endpoint="crash_once"' in ln
    )
    assert row.endswith(" 1")
    # without retries= the crash is the caller's, after one attempt
    with pytest.raises(WorkerCrashed):
        app.crash_no_retries(str(tmp_path / "plain"))
    assert (tmp_path / "plain").read_text() == "1"


def test_a_timed_out_call_is_retried(app, runtime, tmp_path):
    assert app.slow_once(str(tmp_path / "slow")) == 7
    assert (tmp_path / "slow").read_text() == "2"
    assert _stats(runtime, "slow_once")["retries"] == 1


def test_the_users_exceptions_are_not_retried_unless_named(app, runtime, tmp_path):
    with pytest.raises(ValueError, match="attempt 1"):
        app.user_error(str(tmp_path / "user"))
    assert (tmp_path / "user").read_text() == "1", (
        "ran once: a user exception is not an infrastructure failure"
    )
    assert _stats(runtime, "user_error")["retries"] == 0
    assert app.named_error(str(tmp_path / "named")) == 3, (
        "KeyError is named in on=: retried until it succeeds"
    )
    assert _stats(runtime, "named_error")["retries"] == 2


def test_bad_retries_are_refused_at_the_decorator():
    from slipstream.spec.endpoint_spec import build_spec

    with pytest.raises(SpecError, match="retries must be between 0 and 10"):
        build_spec("f", retries=11)
    with pytest.raises(SpecError, match="retries must be a count or Retries"):
        build_spec("f", retries="twice")
    assert Retries(2, on=(KeyError, "pkg.Bad")).on == ("KeyError", "pkg.Bad")
