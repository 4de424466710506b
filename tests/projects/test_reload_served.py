"""Hot reload on real project shapes against a served runtime (`slipstream serve` on loopback).

The promise: every save that is reported live serves the new content, for package
submodules, data files and after any number of saves; old generations are dropped without
touching the live one or one a worker still runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_shapes import ProjectDir

from slipstream.protocol.errors import DeployError

KEEP = 6  # Store(keep_generations=6): what the runtime keeps besides generations in use


@pytest.fixture(scope="module")
def store_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A runtime whose code store is a folder this test can look into."""
    from tests.conftest import start_runtime

    store = tmp_path_factory.mktemp("store")
    # workers write .pyc files as on a user's machine (this test environment turns that off)
    rt = start_runtime("--gpu-fallback", "--store", str(store), env={"PYTHONDONTWRITEBYTECODE": ""})
    rt.store = store
    yield rt
    rt.stop()


def _gens(rt, proj: ProjectDir) -> Path:
    return rt.store / "gens" / proj.key


@pytest.mark.slow
def test_fifty_saves_on_a_package_each_serves_the_new_content(store_runtime, make_shape):
    rt = store_runtime
    proj = make_shape("package")
    first = proj.sync(rt)
    assert {e["name"]: e["module"] for e in first.endpoints} == {
        "hello": "app.a",
        "nested": "app.b",
    }
    assert proj.call(rt, "hello", "ada") == "hello ada v0"
    greeting, version, suffix = "hello", 0, ""
    seen_gens = {first.generation}
    for i in range(1, 51):
        if (
            i % 5 == 0
        ):  # a module the package's submodules import (relatively, and from a subpackage)
            proj.edit("app/shared.py", f'GREETING = "{greeting}"', f'GREETING = "hi{i}"')
            greeting = f"hi{i}"
        else:  # the endpoint's own submodule
            proj.edit("app/a.py", f"VERSION = {version}", f"VERSION = {version + 1}")
            version += 1
        if i == 26:  # a brand-new submodule, imported by an edited one
            proj.write("app/extra.py", "SUFFIX = '!'\n")
            proj.edit(
                "app/a.py",
                "from .shared import greet",
                "from . import extra\nfrom .shared import greet",
            )
            proj.edit("app/a.py", 'v{VERSION}"', 'v{VERSION}" + extra.SUFFIX')
            suffix = "!"
        res = proj.sync(rt)
        assert not res.unchanged and res.generation not in seen_gens, (i, res)
        assert res.restart == "", (i, res.restart)
        seen_gens.add(res.generation)
        assert proj.call(rt, "hello", "ada") == f"{greeting} ada v{version}{suffix}", f"save {i}"
        if i % 5 == 0:
            assert "app.a" in res.reexecuted and "app.sub.deep" in res.reexecuted, res.reexecuted
            assert proj.call(rt, "nested") == f"deep {greeting}", f"save {i}"
    # old generations were dropped, the live one kept; each process (scanner, the two pools'
    # workers) runs from a folder of its own that holds the newest code
    gens = _gens(rt, proj)
    kept = sorted(p.name for p in gens.iterdir() if not p.name.startswith("."))
    assert len(kept) <= KEEP and res.generation in kept, kept
    live = sorted(gens.glob(".live-*"))
    assert len(live) >= 3, live
    for d in live:
        assert (d / "app/a.py").read_text() == proj.read("app/a.py"), d
        assert (d / "app/extra.py").is_file()


@pytest.mark.slow
def test_a_worker_busy_on_an_old_generation_keeps_its_files(store_runtime, make_shape, tmp_path):
    """More saves than the store keeps while a call runs: the call's generation stays on disk, so
    its lazy import and data read still work, and it answers from the code it started with."""
    rt = store_runtime
    proj = make_shape("package", name="busy")
    proj.write("app/late.py", "WORD = 'late-v0'\n")
    proj.write("app/notes.txt", "notes-v0\n")
    proj.write(
        "app/slow.py",
        """
        import importlib
        import os
        import time
        from pathlib import Path

        from slipstream import endpoint

        @endpoint(timeout=120)
        def slow(started, go):
            Path(started).write_text("1")
            while not os.path.exists(go):  # the test creates `go` after its saves
                time.sleep(0.01)
            late = importlib.import_module("app.late")
            return late.WORD + "/" + (Path(__file__).parent / "notes.txt").read_text().strip()
    """,
    )
    proj.sync(rt)
    started, go = tmp_path / "started", tmp_path / "go"
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(v=proj.call(rt, "slow", str(started), str(go)))
    )
    t.start()
    try:
        _wait_for_file(started)
        for i in range(1, KEEP + 3):
            proj.edit("app/a.py", f"VERSION = {i - 1}", f"VERSION = {i}")
            proj.write("app/late.py", f"WORD = 'late-v{i}'\n")
            proj.sync(rt)
            assert proj.call(rt, "hello", "x") == f"hello x v{i}"
    finally:
        go.write_text("1")
        t.join(120)
    assert result.get("v") == "late-v0/notes-v0"
    # and the next call of that endpoint runs the newest code
    proj.edit("app/slow.py", "late.WORD +", "'next:' + late.WORD +")
    proj.sync(rt)
    go2 = tmp_path / "go2"
    go2.write_text("1")
    assert (
        proj.call(rt, "slow", str(tmp_path / "s2"), str(go2)) == f"next:late-v{KEEP + 2}/notes-v0"
    )


def _wait_for_file(p: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not p.exists():  # written by the endpoint's worker, another process
        if time.monotonic() > deadline:
            raise TimeoutError(f"{p} never appeared")
        time.sleep(0.01)


def test_changed_data_file_reexecutes_the_modules_that_read_it(runtime, make_shape):
    proj = make_shape("data_files")
    proj.sync(runtime)
    assert proj.call(runtime, "paint") == "a lighthouse at dusk in oil"
    proj.write("app/prompts.txt", "a heron in the rain\n")
    res = proj.sync(runtime)
    assert res.restart == ""
    assert "app.texts" in res.reexecuted and "app.paint" in res.reexecuted, res.reexecuted
    assert proj.call(runtime, "paint") == "a heron in the rain in oil"
    # read at call time through a path computed at import: the new file, nothing re-run
    proj.write("app/style.json", '{"style": "ink"}\n')
    res = proj.sync(runtime)
    assert proj.call(runtime, "paint") == "a heron in the rain in ink"
    # an unrelated data file changes nothing that runs
    proj.write("app/readme.md", "notes\n")
    res = proj.sync(runtime)
    assert res.reexecuted == [] and res.restart == ""
    assert proj.call(runtime, "paint") == "a heron in the rain in ink"


def test_data_read_through_a_resolved_path_stays_current(runtime, make_shape):
    """`Path(__file__).resolve().parent`, computed once at import: every later read gets the file
    of the code that is live now, also after more saves than the store keeps."""
    proj = make_shape("data_files", name="resolved")
    proj.edit(
        "app/texts.py", "HERE = Path(__file__).parent", "HERE = Path(__file__).resolve().parent"
    )
    proj.sync(runtime)
    assert proj.call(runtime, "paint") == "a lighthouse at dusk in oil"
    for i in range(KEEP + 2):
        proj.write("app/style.json", f'{{"style": "ink{i}"}}\n')
        res = proj.sync(runtime)
        assert "app.texts" not in res.reexecuted  # nothing to re-run: the read happens per call
        assert proj.call(runtime, "paint") == f"a lighthouse at dusk in ink{i}", i


def test_data_file_read_by_code_of_no_project_module_replaces_the_workers(runtime, make_shape):
    """A read that cannot be traced to a module (a pool thread running library code): the workers are
    replaced, and the sync reply says so; the call serves the new text."""
    proj = make_shape("data_files", name="untraced")
    proj.write(
        "app/texts.py",
        """
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path

        HERE = Path(__file__).parent
        with ThreadPoolExecutor(1) as pool:  # read on a thread that runs only library code
            PROMPT = pool.submit(Path.read_text, HERE / "prompts.txt").result().strip()
    """,
    )
    proj.sync(runtime)
    assert proj.call(runtime, "paint") == "a lighthouse at dusk in oil"
    proj.write("app/prompts.txt", "a fox\n")
    res = proj.sync(runtime)
    assert "app/prompts.txt" in res.restart, res
    assert proj.call(runtime, "paint") == "a fox in oil"


def test_src_layout_and_namespace_package_reload(runtime, make_shape):
    src = make_shape("src_layout")
    res = src.sync(runtime)
    assert [e["module"] for e in res.endpoints] == ["mypkg.model"]
    assert src.call(runtime, "predict", "rain") == "PREDICTED RAIN/mypkg.util"
    src.write("src/mypkg/util.py", "def shout(s):\n    return s.title()\n")
    res = src.sync(runtime)
    assert "mypkg.model" in res.reexecuted
    assert src.call(runtime, "predict", "rain") == "Predicted Rain/mypkg.util"

    ns = make_shape("namespace")
    res = ns.sync(runtime)
    assert [e["module"] for e in res.endpoints] == ["ns.tools.work"]
    assert ns.call(runtime, "wrap", "x") == "<x> from ns.tools.helpers"
    ns.write("ns/tools/helpers.py", "def tag(x):\n    return f'[{x}]'\n")
    ns.sync(runtime)
    assert ns.call(runtime, "wrap", "x") == "[x] from ns.tools.helpers"


def test_stdlib_named_module_is_refused_at_deploy(runtime, make_shape):
    proj = make_shape("stdlib_named")
    with pytest.raises(DeployError) as err:
        proj.sync(runtime)
    assert err.value.file == "calendar.py"
    assert (
        "standard-library module 'calendar'" in err.value.message
        and "Rename it" in err.value.message
    )
    # renamed as the message says: deploys and runs the project's code
    (proj.root / "calendar.py").rename(proj.root / "calendar_utils.py")
    proj.edit("main.py", "import calendar\n", "import calendar_utils as calendar\n")
    proj.sync(runtime)
    assert proj.call(runtime, "which") == "the project's calendar"
