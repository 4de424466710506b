"""Fuzz the runtime's HTTP API from its own OpenAPI document (schemathesis, bounded examples).

Each operation gets EXAMPLES_PER_OPERATION examples in each generation mode (valid data and
data that breaks the schema). /v1/logs is left out: it is an endless server-sent event stream
that never "answers" (its auth is covered by test_auth.py). Calls are fuzzed both with
generated endpoint names (mostly unknown) and aimed at a deployed endpoint, so argument
handling is reached too.

Schemathesis's own pytest loader (`schemathesis.pytest.from_fixture`) fails on pytest 9
(`Function` has no `_nodeid`), so this drives its Python API with Hypothesis directly.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import start_runtime
from tests.reliability.helpers import ECHO_APP, HANG_BOUND_S, auth, deploy, message_of

EXAMPLES_PER_OPERATION = 30
EXCLUDED = {"/v1/logs"}  # endless SSE stream, see the module docstring


@pytest.fixture(scope="module")
def rt():
    runtime = start_runtime("--gpu-fallback", "--max-file-mb", "1")
    deploy(runtime, {"app.py": ECHO_APP})
    yield runtime
    runtime.stop()


def _redeploy_if_gone(rt) -> None:
    """A fuzzed commit may legitimately deploy an empty project: put the echo app back."""
    r = httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S)
    if "echo" not in {e["name"] for e in r.json()["endpoints"]}:
        deploy(rt, {"app.py": ECHO_APP})


def _problem(response, case) -> str | None:
    where = f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:120]!r}"
    if response.status_code >= 500:
        return f"{where} -> {response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500 and response.status_code != 405:
        ctype = (response.headers.get("content-type") or [""])[0]
        if not message_of(ctype, response.content):
            return f"{where} -> {response.status_code} without a message: {response.text[:300]}"
    return None


def _short_long_poll(case) -> None:
    """A long poll (`?wait=s`) holds its answer as long as it is asked, up to the runtime's cap:
    a fuzzed wait is cut to a second, so that every other request is still bounded by HANG_BOUND_S."""
    wait = (case.query or {}).get("wait")
    try:
        if wait is not None and float(wait) > 1:
            case.query["wait"] = 1
    except (TypeError, ValueError):
        pass


def _fuzz(rt, strategy, label: str, counts: dict[str, int], problems: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case) -> None:
        counts[label] = counts.get(label, 0) + 1
        _short_long_poll(case)
        started = time.monotonic()
        response = case.call(base_url=rt.url, headers=auth(rt), timeout=HANG_BOUND_S)
        assert time.monotonic() - started < HANG_BOUND_S
        problem = _problem(response, case)
        if problem and len(problems) < 20:
            problems.append(problem)

    try:
        fuzz()
    except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
        counts[label + " (nothing to break)"] = 0


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error_or_hang(rt, mode):
    schema = schemathesis.openapi.from_url(
        f"{rt.url}/openapi.json", headers=auth(rt), timeout=HANG_BOUND_S
    )
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 7, [op.label for op in operations]
    problems: list[str] = []
    counts: dict[str, int] = {}
    for op in operations:
        if op.path in EXCLUDED:
            continue
        _fuzz(rt, op.as_strategy(mode), op.label, counts, problems)
        if op.path == "/v1/endpoints/{name}/call":
            echo = op.as_strategy(mode, path_parameters={"name": "echo"})
            _fuzz(rt, echo, op.label.replace("{name}", "echo"), counts, problems)
        _redeploy_if_gone(rt)

    print(f"\nfuzzed ({mode}): " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    assert not problems, "\n".join(problems)
    r = httpx.post(
        f"{rt.url}/v1/endpoints/echo/call",
        json={"args": ["alive"]},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    )
    assert r.status_code == 200 and r.json()["result"] == "alive"
