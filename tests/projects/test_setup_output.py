"""What a class endpoint's setup() and its module's import print (print() and logging) reaches
`slipstream run` and `slipstream dev`, labelled, once per worker start and after a reload that
runs setup again. The editor's run cards: tests/daemon/test_daemon_runtime.py."""

from __future__ import annotations

import pytest
from project_shapes import DevServer, ProjectDir, run_sdk

pytestmark = pytest.mark.slow

PAINTER = """
import logging
from slipstream import endpoint

print("painter module imported")

@endpoint(workers=(0, 1))
class Painter:
    def setup(self):
        print("loading model v1...")
        logging.getLogger("painter").warning("weights ready")

    def paint(self, prompt: str) -> str:
        print("painting", prompt)
        return prompt + " in oil"
"""

MAIN = """
from painter import Painter

if __name__ == "__main__":
    p = Painter()
    print("RESULT", p.paint("a heron"))
    print("RESULT", p.paint("a fox"))
"""


def _project(root):
    root.mkdir()
    return ProjectDir(root.resolve())


def test_setup_and_import_output_shows_under_run_once_labelled(tmp_path):
    proj = _project(tmp_path / "painter_run")
    proj.write("painter.py", PAINTER)
    proj.write("main.py", MAIN)
    out = run_sdk(proj.root, "-m", "slipstream", "run", "main.py")
    assert out.returncode == 0, out.stdout + out.stderr
    seen = (out.stdout + out.stderr).splitlines()
    assert seen.count("[Painter import] painter module imported") == 1, seen
    assert seen.count("[Painter setup] loading model v1...") == 1, seen
    assert seen.count("[Painter setup] weights ready") == 1, seen
    assert seen.count("painting a heron") == 1 and seen.count("painting a fox") == 1, seen
    assert [line for line in seen if line.startswith("RESULT")] == [
        "RESULT a heron in oil",
        "RESULT a fox in oil",
    ]


def test_setup_output_shows_under_dev_at_start_and_after_a_reload(tmp_path):
    proj = _project(tmp_path / "painter_dev")
    proj.write("painter.py", PAINTER)
    dev = DevServer(proj.root)
    try:
        dev.wait_for("serving", timeout=90)
        dev.wait_listening()
        assert dev.call("Painter/paint", {"prompt": "a heron"}) == "a heron in oil"
        dev.wait_for("[Painter import] painter module imported", timeout=15)
        dev.wait_for("[Painter setup] loading model v1...", timeout=15)
        dev.wait_for("[Painter setup] weights ready", timeout=15)
        proj.edit("painter.py", "loading model v1", "loading model v2")
        # the worker reloads and runs setup again, before any call; its lines may come before
        # the reload line (the deploy waits for warm workers to switch, to report on them)
        dev.wait_for("[Painter setup] loading model v2...", timeout=30)
        if not any(line.startswith("↻ g2") for line in dev.seen):
            dev.wait_for("↻ g2", "painter.py", "live", timeout=30)
        assert dev.call("Painter/paint", {"prompt": "a fox"}) == "a fox in oil"
        seen = list(dev.seen)
        while not dev.lines.empty():
            seen.append(dev.lines.get())
        assert seen.count("[Painter setup] loading model v1...") == 1, seen
        assert seen.count("[Painter setup] loading model v2...") == 1, seen
    finally:
        dev.stop()
