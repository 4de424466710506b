"""Hot reload on a real runtime: edits go live between calls and loaded models stay loaded."""

from __future__ import annotations

import concurrent.futures as cf
import time

import pytest

from slipstream.protocol.errors import DeployError

MODEL = """
import os, time
from slipstream import endpoint, keep
from slipstream.keeper import stats

MODEL_ID = "{model}"

def load_model(model_id):
    time.sleep(0.5)  # a slow "model" load
    return {{"id": model_id, "pid": os.getpid()}}

@endpoint
class Painter:
    def setup(self):
        self.model = keep(MODEL_ID, lambda: load_model(MODEL_ID))

    def paint(self, prompt):
        return "{style}:" + prompt + "@" + self.model["id"]

    def loads(self):
        s = stats()
        return {{"loads": s.loads, "releases": s.releases, "keys": s.keys}}

    def pid(self):
        return os.getpid()
"""

HELPERS = """
def shout(s):
    return s.upper() + "{suffix}"
"""

USES_HELPERS = """
from slipstream import endpoint
from helpers import shout

@endpoint
def greet(name):
    return shout("hi " + name)

@endpoint
def slow(tag="old", started=None, release=None):
    import os, time
    if started:  # say it runs, then wait to be released
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return tag
"""

UNRELATED = """
from slipstream import endpoint

@endpoint
def other():
    return "other"
"""


@pytest.fixture()
def proj(runtime, project_factory):
    p = project_factory(
        runtime,
        {
            "painter.py": MODEL.format(model="tiny/sd-v1", style="oil"),
            "helpers.py": HELPERS.format(suffix="!"),
            "app.py": USES_HELPERS,
            "unrelated.py": UNRELATED,
        },
    )
    return p


def test_edit_is_live_on_the_next_call(proj):
    app = proj.module("app")
    assert app.greet("ada") == "HI ADA!"
    proj.write("helpers.py", HELPERS.format(suffix="?!"))
    res = proj.sync()
    assert res.changed == ["helpers.py"]
    assert app.greet("ada") == "HI ADA?!"


def test_only_changed_modules_and_their_importers_re_execute(proj):
    app = proj.module("app")
    app.greet("x")
    proj.write("helpers.py", HELPERS.format(suffix="."))
    res = proj.sync()
    assert "helpers" in res.reexecuted and "app" in res.reexecuted
    assert "unrelated" not in res.reexecuted and "painter" not in res.reexecuted


def test_model_loaded_through_keep_survives_edits(proj):
    painter = proj.module("painter")
    p = painter.Painter()
    assert p.paint("cat") == "oil:cat@tiny/sd-v1"
    for i, style in enumerate(["ink", "pastel", "charcoal"]):
        proj.write("painter.py", MODEL.format(model="tiny/sd-v1", style=style))
        proj.sync()
        assert p.paint("cat") == f"{style}:cat@tiny/sd-v1", f"edit {i} not live"
    assert p.loads()["loads"] == 1, "the model must load exactly once across edits"


def test_new_key_loads_the_new_model_and_releases_the_old(proj):
    painter = proj.module("painter")
    p = painter.Painter()
    p.paint("x")
    proj.write("painter.py", MODEL.format(model="tiny/sd-v2", style="oil"))
    proj.sync()
    assert p.paint("x") == "oil:x@tiny/sd-v2"
    st = p.loads()
    assert st["loads"] == 2 and st["releases"] == 1
    assert st["keys"] == ["'tiny/sd-v2'"]


def test_broken_save_keeps_old_code_serving_and_reports_the_line(proj):
    app = proj.module("app")
    assert app.greet("a") == "HI A!"
    proj.write("helpers.py", "def shout(s):\n    return s.upper(\n")
    with pytest.raises(DeployError) as exc:
        proj.sync()
    assert exc.value.file == "helpers.py" and exc.value.line in (2, 3)
    assert "SyntaxError" in str(exc.value) or exc.value.type == "SyntaxError"
    assert app.greet("a") == "HI A!", "the old generation keeps serving"


def test_error_in_module_level_code_is_refused_with_file_and_line(proj):
    app = proj.module("app")
    app.greet("a")
    proj.write(
        "helpers.py", "x = 1\nraise RuntimeError('config missing')\ndef shout(s):\n    return s\n"
    )
    with pytest.raises(DeployError) as exc:
        proj.sync()
    assert exc.value.file == "helpers.py" and exc.value.line == 2
    assert "config missing" in str(exc.value)
    assert app.greet("a") == "HI A!"


def test_request_in_flight_during_reload_finishes_on_old_code(proj, tmp_path):
    app = proj.module("app")
    app.slow("warm")
    started, release = tmp_path / "started", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(app.slow, "old", str(started), str(release))
        deadline = time.monotonic() + 60
        while not started.exists():  # the call runs on the old code
            assert time.monotonic() < deadline and not inflight.done(), inflight
            time.sleep(0.01)
        proj.write("app.py", USES_HELPERS.replace("return tag", "return 'new-' + tag"))
        proj.sync()
        assert not inflight.done(), "the call was still in flight during the sync"
        release.touch()
        assert inflight.result(timeout=60) == "old"
    assert app.slow("x") == "new-x"


def test_module_marked_unsafe_replaces_the_worker_and_says_so(proj):
    painter = proj.module("painter")
    p = painter.Painter()
    first_pid_model = p.paint("a")
    first_worker = p.pid()
    src = MODEL.format(model="tiny/sd-v1", style="fresh") + '\nSLIPSTREAM_RELOAD = "restart"\n'
    proj.write("painter.py", src)
    res = proj.sync()
    assert "painter" in res.restart and "restart" in res.restart
    assert p.paint("a") == "fresh:a@tiny/sd-v1"
    assert p.pid() != first_worker, "the marked module got a new worker, not a reload in place"
    assert p.loads()["loads"] == 1, "a new worker loads the model afresh"
    assert first_pid_model.startswith("oil")
