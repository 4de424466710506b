"""`slipstream run` installs an endpoint's dependencies once per machine: the embedded runtime's
store is temporary, its dependency environments are not (envs.shared_env_root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

# tabulate: a small pure-Python wheel the package index serves quickly
APP = """
from slipstream import endpoint

@endpoint(dependencies=["tabulate"])
def table(rows):
    import sys, tabulate
    return tabulate.tabulate(rows), sys.prefix

if __name__ == "__main__":
    text, prefix = table([[1, 2]])
    print("TABLE", text.splitlines()[1].split())
    print("PREFIX", prefix)
"""


def _env(cache: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN", "SLIPSTREAM_PROJECT"))
    }
    env["PYTHONPATH"] = f"{REPO / 'runtime'}"  # this checkout's Slipstream, as if installed
    env["SLIPSTREAM_ENV_CACHE"] = str(cache)
    return env


def _start(root: Path, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "app.py"],
        cwd=root,
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "TABLE ['1', '2']" in out, out
    return out


def test_second_run_reuses_the_environment_the_first_installed(tmp_path):
    root, cache = tmp_path / "proj", tmp_path / "cache"
    root.mkdir()
    (root / "app.py").write_text(APP)
    first = _finish(_start(root, cache))
    assert "installing tabulate" in first, first
    second = _finish(_start(root, cache))
    assert "installing tabulate" not in second, second
    assert "dependencies tabulate: reusing their environment" in second, second
    prefix = {line for line in (first + second).splitlines() if line.startswith("PREFIX")}
    assert len(prefix) == 1 and str(cache) in prefix.pop(), "both ran in the cached environment"


def test_two_runs_at_once_install_the_environment_once(tmp_path):
    cache = tmp_path / "cache"
    procs = []
    for name in ("a", "b"):  # two projects with the same dependency set, run at the same time
        root = tmp_path / name
        root.mkdir()
        (root / "app.py").write_text(APP)
        procs.append(_start(root, cache))
    outs = [_finish(p) for p in procs]
    installed = [o for o in outs if "installing tabulate" in o]
    reused = [o for o in outs if "dependencies tabulate: reusing their environment" in o]
    assert len(installed) == 1 and len(reused) == 1, "\n---\n".join(outs)
    (env_dir,) = [p for p in cache.glob("*/*") if p.is_dir()]
    assert (env_dir / ".complete").exists()
