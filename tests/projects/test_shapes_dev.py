"""Project shapes under `slipstream dev`: the watcher's save path and HTTP calls.

The promise: a save `slipstream dev` reports live serves the new content, for package
submodules and data files, with no config file; a stdlib-named module is refused naming it.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_package_saves_under_dev(make_shape, dev_server):
    proj = make_shape("package")
    dev = dev_server(proj.root)
    assert dev.call("hello", {"name": "ada"}) == "hello ada v0"
    assert dev.call("nested") == "deep hello"
    for i in range(1, 6):
        proj.edit("app/a.py", f"VERSION = {i - 1}", f"VERSION = {i}")
        dev.wait_for("↻", "app/a.py", "live")
        assert dev.call("hello", {"name": "ada"}) == f"hello ada v{i}", dev.seen[-3:]
    proj.edit("app/shared.py", 'GREETING = "hello"', 'GREETING = "hey"')
    line = dev.wait_for("↻", "app/shared.py", "live")
    assert "app.sub.deep" in line and "app.a" in line, line
    assert dev.call("hello", {"name": "ada"}) == "hey ada v5"
    assert dev.call("nested") == "deep hey"


def test_data_file_save_under_dev(make_shape, dev_server):
    proj = make_shape("data_files")
    dev = dev_server(proj.root)
    assert dev.call("paint") == "a lighthouse at dusk in oil"
    proj.write("app/prompts.txt", "a heron\n")
    line = dev.wait_for("↻", "app/prompts.txt", "live")
    assert "re-executed" in line and "app.texts" in line, line
    assert dev.call("paint") == "a heron in oil"


def test_src_layout_under_dev(make_shape, dev_server):
    proj = make_shape("src_layout")
    dev = dev_server(proj.root)
    assert dev.call("predict", {"x": "rain"}) == "PREDICTED RAIN/mypkg.util"
    proj.write("src/mypkg/util.py", "def shout(s):\n    return s[::-1]\n")
    dev.wait_for("↻", "src/mypkg/util.py", "live")
    assert dev.call("predict", {"x": "ab"}) == "ba detciderp/mypkg.util"


def test_stdlib_named_module_under_dev(make_shape):
    from project_shapes import DevServer

    proj = make_shape("stdlib_named")
    dev = DevServer(proj.root)
    try:
        line = dev.wait_for("✗", timeout=90)
        assert "calendar.py" in line and "standard-library module 'calendar'" in line, line
        assert "Traceback" not in "\n".join(dev.seen)
    finally:
        dev.stop()


def test_namespace_package_under_dev(make_shape, dev_server):
    proj = make_shape("namespace")
    proj.write("pyproject.toml", '[project]\nname = "ns-tools"\nversion = "0"\n')
    dev = dev_server(proj.root)
    assert dev.call("wrap", {"x": "a"}) == "<a> from ns.tools.helpers"
    proj.write("ns/tools/helpers.py", "def tag(x):\n    return f'{{{x}}}'\n")
    dev.wait_for("↻", "ns/tools/helpers.py", "live")
    assert dev.call("wrap", {"x": "a"}) == "{a} from ns.tools.helpers"


def test_dev_serves_from_the_runtime_slipstream_runtime_url_names(make_shape, dev_server, runtime):
    """`export SLIPSTREAM_RUNTIME_URL=ssh://gpu-box` (docs/remote.md), then `slipstream dev`:
    the endpoints run on that runtime, as under `slipstream run` and in the editor, not on an
    embedded one on the laptop."""
    from project_shapes import sdk_env

    from tests.conftest import remove_project

    proj = make_shape("package")
    try:
        dev = dev_server(
            proj.root,
            env=sdk_env(SLIPSTREAM_RUNTIME_URL=runtime.url, SLIPSTREAM_TOKEN=runtime.token),
        )
        assert dev.call("hello", {"name": "ada"}) == "hello ada v0"
        assert not any("embedded runtime" in line for line in dev.seen), dev.seen
        client = runtime.client()
        try:
            on_runtime = {(e["project"], e["name"]) for e in client.status()["endpoints"]}
        finally:
            client.close()
        from slipstream.sdk.config import project_key

        assert (project_key(proj.root), "hello") in on_runtime, on_runtime
    finally:
        remove_project(runtime, proj.root)


def test_dev_started_on_broken_code_says_where_it_listens_and_serves_once_fixed(make_shape):
    from project_shapes import DevServer

    proj = make_shape("package")
    good = (proj.root / "app/a.py").read_text()
    proj.write("app/a.py", good + "\nraise RuntimeError('broken at start')\n")
    dev = DevServer(proj.root)
    try:
        line = dev.wait_for("✗", timeout=90)
        assert (
            "broken at start" in line
            and "(nothing deployed yet: fix it and save)" in line
            and "None" not in line
        ), line
        line = dev.wait_for("listening at", timeout=30)
        assert dev.url in line and "fix the error above and save" in line, line
        dev.wait_listening()  # the watcher starts just before the HTTP server (as the other dev tests wait)
        proj.write("app/a.py", good + "\nraise RuntimeError('still broken')\n")
        line = dev.wait_for(
            "✗", timeout=30
        )  # a second refusal before any deploy: as quick, as clear
        assert "still broken" in line and "nothing deployed yet" in line, line
        proj.write("app/a.py", good)
        dev.wait_for("↻", "live", timeout=60)
        assert dev.call("hello", {"name": "ada"}) == "hello ada v0"
    finally:
        dev.stop()


def test_restoring_the_last_good_file_after_an_error_says_it_serves_again(make_shape, dev_server):
    proj = make_shape("package")
    dev = dev_server(proj.root)
    good = (proj.root / "app/a.py").read_text()
    proj.write("app/a.py", good + "\nraise RuntimeError('broken for a moment')\n")
    line = dev.wait_for("✗", timeout=30)
    assert "broken for a moment" in line and "still serving g1" in line, line
    proj.write("app/a.py", good)  # exactly the last good file: the sync is "unchanged"
    line = dev.wait_for("✓", timeout=15)
    assert line.startswith("✓ g1 serving again") and "the last error is fixed" in line, line
    assert dev.call("hello", {"name": "ada"}) == "hello ada v0"
