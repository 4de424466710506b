"""The call forms a Modal user reaches for, against a real runtime (`slipstream serve` on
loopback): map over several iterables as an iterator (in order and as completed, failures in
place or as a MapError), starmap, for_each, and their `.aio` forms."""

from __future__ import annotations

import asyncio

import pytest

from slipstream.protocol.errors import MapError
from tests.conftest import start_runtime

APP = """
import time
from slipstream import endpoint

@endpoint(workers=4, concurrency=8)
def work(x: int, y: int = 0, scale: int = 1) -> int:
    if x % 7 == 3:
        raise ValueError(f"bad input {x}")
    return (x + y) * scale

@endpoint(workers=2, concurrency=4)
def wait_then(x: int, delay: float) -> int:
    time.sleep(delay)
    return x

@endpoint(workers=2, concurrency=4)
def note(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\\n")
"""


@pytest.fixture(scope="module")
def rt():
    r = start_runtime()
    yield r
    r.stop()


@pytest.fixture()
def app(rt, project_factory):
    proj = project_factory(rt, {"forms_app.py": APP})
    return proj.module("forms_app")


def _expected(n: int) -> list[object]:
    return [("fail", i) if i % 7 == 3 else i * 2 for i in range(n)]


def _shape(results: list[object]) -> list[object]:
    return [("fail", int(str(r).split()[-1])) if isinstance(r, ValueError) else r for r in results]


def test_a_map_over_1000_items_with_failures_accounts_for_every_result_in_order(app):
    xs = list(range(1000))
    it = app.work.map(xs, xs, return_exceptions=True)  # two iterables zip: work(x, y=x)
    assert iter(it) is it, "map returns an iterator, not a list"
    out = list(it)
    assert _shape(out) == _expected(1000)
    assert sum(isinstance(r, ValueError) for r in out) == 143
    assert app.work.last_call.calls == 1000


def test_as_completed_yields_every_result_once_and_the_fast_ones_first(app):
    out = list(app.work.map(range(1000), range(1000), order_outputs=False, return_exceptions=True))
    assert sorted(_shape(out), key=lambda r: r[1] * 2 if isinstance(r, tuple) else r) == _expected(
        1000
    )
    # one slow input first: as completed, it comes out last; in order, first
    delays = [1.0] + [0.0] * 5
    assert list(app.wait_then.map(range(6), delays, order_outputs=False))[-1] == 0
    assert list(app.wait_then.map(range(6), delays)) == [0, 1, 2, 3, 4, 5]


def test_results_arrive_while_later_calls_still_run(app):
    it = app.wait_then.map([0, 1], [0.0, 30.0], order_outputs=False)
    assert next(it) == 0, "the first result comes before the whole map is done"
    it.close()  # leaving early: the slow call is dropped, nothing hangs


def test_without_return_exceptions_a_failure_raises_map_error_after_all_ran(app):
    got = []
    with pytest.raises(MapError) as exc:
        for r in app.work.map(
            range(300), kwargs={"scale": 10}
        ):  # more inputs than are in flight at once
            got.append(r)
    assert got == [0, 10, 20], "results before the first failure were yielded"
    err = exc.value
    assert err.failed == [i for i in range(300) if i % 7 == 3], (
        "the inputs after the failure still ran"
    )
    assert err.results[299] == 2990 and err.results[3] is None and len(err.results) == 300
    assert str(err.errors[10]) == "bad input 10"


def test_starmap_for_each_and_keyword_forms(app, tmp_path):
    assert list(app.work.starmap([(1, 2), (4, 5)], kwargs={"scale": 3})) == [9, 27]
    assert list(app.work.map([1, 2], scale=2)) == [2, 4], "plain keyword arguments go to every call"
    assert list(app.work.map([1, 2, 4], [10, 20])) == [11, 22], (
        "zips stop at the shortest, like map()"
    )
    log = tmp_path / "notes.txt"
    assert app.note.for_each([str(log)] * 3, ["a", "b", "c"]) is None
    assert sorted(log.read_text().split()) == ["a", "b", "c"]
    with pytest.raises(MapError):
        app.work.for_each([3, 4])
    app.work.for_each([3, 4], ignore_exceptions=True)
    with pytest.raises(TypeError, match="starmap\\(\\) needs each item to be a tuple"):
        list(app.work.starmap([1, 2]))
    with pytest.raises(TypeError, match="wrap it in a list"):
        app.work.map("abc")
    with pytest.raises(TypeError, match="both in kwargs= and as keyword arguments"):
        app.work.map([1], kwargs={"scale": 1}, scale=2)


def test_the_aio_forms_are_async_iterators_with_the_same_promises(app):
    async def main():
        ordered = [r async for r in app.work.map.aio(range(300), return_exceptions=True)]
        done = [
            r
            async for r in app.work.map.aio(range(300), order_outputs=False, return_exceptions=True)
        ]
        star = [r async for r in app.work.starmap.aio([(1, 1), (2, 2)])]
        first = None
        with pytest.raises(MapError) as exc:
            async for r in app.work.map.aio(range(10)):
                first = first if first is not None else r
        await app.work.for_each.aio([1, 2])
        return ordered, done, star, first, exc.value

    ordered, done, star, first, err = asyncio.run(main())
    want = [("fail", i) if i % 7 == 3 else i for i in range(300)]
    assert _shape(ordered) == want
    assert sorted(_shape(done), key=lambda r: r[1] if isinstance(r, tuple) else r) == want
    assert star == [2, 4]
    assert first == 0 and err.failed == [3]


def test_modal_remote_says_the_slipstream_form(tmp_path, monkeypatch):
    """`f.remote(x)` is what a Modal user types first: the error says to call `f(x)`, for a
    function and for a class endpoint's method (no runtime needed to find out)."""
    import importlib

    (tmp_path / "modal_user.py").write_text(
        "from slipstream import endpoint\n\n@endpoint\ndef embed(text: str) -> int:\n    return len(text)\n\n"
        "@endpoint\nclass Model:\n    def predict(self, x: int) -> int:\n        return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("modal_user")
    with pytest.raises(
        AttributeError,
        match=r"embed\.remote\(\.\.\.\) is Modal's form; .* call the endpoint itself: embed\(\.\.\.\)",
    ):
        mod.embed.remote("hi")
    with pytest.raises(
        AttributeError,
        match=r"Model\(\)\.predict\.remote_gen\(\.\.\.\) is Modal's form; .*: Model\(\)\.predict\(\.\.\.\)",
    ):
        mod.Model().predict.remote_gen(1)
    with pytest.raises(AttributeError, match="'RemoteMethod' object has no attribute 'nope'"):
        mod.Model().predict.nope  # noqa: B018 - other names are plain AttributeErrors
    assert mod.embed.local("abc") == 3 and mod.embed.__name__ == "embed"
    monkeypatch.delitem(__import__("sys").modules, "modal_user")
