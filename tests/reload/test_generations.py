"""Live means live: a save lands while calls run. Each call says the generation it ran on, a map
says which items ran on which, and a deploy never stops the calls a variant is running."""

from __future__ import annotations

import concurrent.futures as cf
import time
from pathlib import Path

import httpx
import pytest

from slipstream.sdk.config import project_key
from tests.reliability.helpers import HANG_BOUND_S, auth

APP = """
import os, time
from slipstream import endpoint

VERSION = "{version}"

@endpoint
def slow(started=None, release=None):
    if started:  # say it runs, then wait to be released
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return VERSION
"""


@pytest.fixture()
def proj(runtime, project_factory):
    return project_factory(runtime, {"gens_app.py": APP.format(version="v1")})


def _wait_for(path: Path, fut: cf.Future) -> None:
    deadline = time.monotonic() + HANG_BOUND_S
    while not path.exists():
        assert time.monotonic() < deadline and not fut.done(), fut
        time.sleep(0.01)


def test_a_call_running_across_a_save_says_the_generation_it_ran_on(proj, tmp_path):
    app = proj.module("gens_app")
    assert app.slow() == "v1"
    g1 = app.slow.last_call.generation
    assert g1 == proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(app.slow, str(started), str(release))
        _wait_for(started, inflight)
        proj.write("gens_app.py", APP.format(version="v2"))
        g2 = proj.sync().generation
        assert g2 != g1
        release.touch()
        assert inflight.result(timeout=HANG_BOUND_S) == "v1", "it ran the old code"
    assert app.slow.last_call.generation == g1, "and says so"
    assert app.slow() == "v2"
    assert app.slow.last_call.generation == g2


def test_an_http_call_running_across_a_save_says_the_generation_it_ran_on(proj, runtime, tmp_path):
    app = proj.module("gens_app")
    app.slow()
    g1 = proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    url = f"{runtime.url}/v1/projects/{project_key(proj.root)}/endpoints/slow/call"

    def call(**kwargs: str) -> dict:
        r = httpx.post(url, json={"kwargs": kwargs}, headers=auth(runtime), timeout=HANG_BOUND_S)
        assert r.status_code == 200, r.text
        return r.json()

    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(call, started=str(started), release=str(release))
        _wait_for(started, inflight)
        proj.write("gens_app.py", APP.format(version="v2"))
        g2 = proj.sync().generation
        release.touch()
        reply = inflight.result(timeout=HANG_BOUND_S)
    assert (reply["result"], reply["generation"]) == ("v1", g1)
    reply = call()
    assert (reply["result"], reply["generation"]) == ("v2", g2)


MAP_APP = """
import os, time
from slipstream import endpoint

VERSION = "{version}"

@endpoint(workers=1)
def step(i, started=None, release=None):
    if i == 2 and started:  # the third item says it runs, then waits for the save
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return VERSION
"""


@pytest.fixture()
def map_proj(runtime, project_factory):
    return project_factory(runtime, {"gens_map.py": MAP_APP.format(version="v1")})


def _run_map(fn, form: str, items: list[int], **kwargs: str) -> list[str]:
    if form == "sync":
        return list(fn.map(items, **kwargs))

    async def collect() -> list[str]:
        return [r async for r in fn.map.aio(items, **kwargs)]

    import asyncio

    return asyncio.run(collect())


@pytest.mark.parametrize("form", ["sync", "aio"])
def test_a_map_across_a_save_says_which_items_ran_on_which_generation(
    map_proj, tmp_path, capsys, form
):
    app = map_proj.module("gens_map")
    app.step(0)
    g1 = map_proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    capsys.readouterr()
    with cf.ThreadPoolExecutor(1) as ex:
        mapped = ex.submit(
            _run_map, app.step, form, list(range(6)), started=str(started), release=str(release)
        )
        _wait_for(started, mapped)
        map_proj.write("gens_map.py", MAP_APP.format(version="v2"))
        g2 = map_proj.sync().generation
        release.touch()
        results = mapped.result(timeout=HANG_BOUND_S)
    info = app.step.last_call
    assert info.calls == 6
    gens = info.generations
    assert list(gens) == [g1, g2] and 2 in gens[g1] and gens[g2], gens
    assert sorted(gens[g1] + gens[g2]) == list(range(6))
    assert [("v1" if i in gens[g1] else "v2") for i in range(6)] == results, (
        "each item says the code it ran"
    )
    err = capsys.readouterr().err
    assert err.count("code versions") == 1, err
    line = next(x for x in err.splitlines() if "code versions" in x)
    assert line.startswith("slipstream: map of step ran on 2 code versions: items ")
    assert f" on {g1}, " in line and line.endswith(f" on {g2} (a save landed during the map)")


def test_a_map_with_no_save_says_nothing_of_generations(map_proj, capsys):
    app = map_proj.module("gens_map")
    assert list(app.step.map(range(4))) == ["v1"] * 4
    g1 = map_proj.sync().generation
    assert app.step.last_call.generations == {g1: [0, 1, 2, 3]}
    assert "code version" not in capsys.readouterr().err


def test_item_ranges_read_as_written_by_hand():
    from slipstream.sdk.mapping import index_ranges

    assert index_ranges(list(range(40))) == "0-39"
    assert index_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3, 7, 9-10"
    assert index_ranges(list(range(0, 20, 2)), most=3) == "0, 2, 4, +7 more"


def test_a_save_says_which_running_calls_finish_on_the_old_code(proj, tmp_path, capsys):
    from slipstream.sdk.devserver import DevState

    app = proj.module("gens_app")
    app.slow()
    g1 = proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(app.slow, str(started), str(release))
        _wait_for(started, inflight)
        proj.write("gens_app.py", APP.format(version="v2"))
        capsys.readouterr()
        res = DevState(proj.rt.client(), proj.root).sync("gens_app.py")  # slipstream dev's save
        release.touch()
        assert inflight.result(timeout=HANG_BOUND_S) == "v1"
    assert res is not None and res.in_flight == [{"endpoint": "slow", "calls": 1, "generation": g1}]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("↻"))
    assert line.startswith(f"↻ {res.generation}  gens_app.py  live in ")
    assert line.endswith(f"; 1 running call of slow finishes on {g1}"), line
    assert proj.sync().in_flight == [], "nothing runs now"
