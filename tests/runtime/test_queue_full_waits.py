"""A batch waits for room on a runtime whose queue is full instead of failing (sdk/waiting.py):
f.map, f.map.aio and f.spawn_map over one worker, on a runtime that queues one call at most."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import start_runtime
from tests.reliability.helpers import endpoint_info

APP = """
import time
from slipstream import endpoint

@endpoint(workers=1)
def nap(i: int) -> int:
    time.sleep(0.2)
    return i * 10
"""


@pytest.fixture(scope="module")
def small_queue():
    rt = start_runtime("--max-queue", "1")
    yield rt
    rt.stop()


def test_map_spawn_map_and_async_map_wait_for_room(small_queue, project_factory):
    app = project_factory(small_queue, {"queue_app.py": APP}).module("queue_app")
    assert list(app.nap.map(range(6))) == [0, 10, 20, 30, 40, 50]
    refused = endpoint_info(small_queue, "nap")["stats"]["overloads"]
    assert refused > 0, (
        "the map sent more than the queue holds: some calls were refused and sent again"
    )
    handles = app.nap.spawn_map(range(4))
    assert [h.get(timeout=60) for h in handles] == [0, 10, 20, 30]

    async def collect() -> list[int]:
        return [r async for r in app.nap.map.aio(range(5))]

    assert asyncio.run(collect()) == [0, 10, 20, 30, 40]
    assert endpoint_info(small_queue, "nap")["stats"]["overloads"] > refused
