"""Each project shape run as a user runs it: a real script, the SDK's embedded runtime.

The promise: the runtime imports the project exactly as the user's Python does, so the remote
call returns what `.local()` returns, with no config file needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from project_shapes import lines_with, run_sdk, sdk_env

pytestmark = pytest.mark.slow


def test_package_with_relative_imports_and_no_config(make_shape):
    proj = make_shape("package")
    out = run_sdk(proj.root, "main.py", "ada")
    assert out.returncode == 0, out.stderr
    assert lines_with(out.stdout, "REMOTE") == ["hello ada v0 | deep hello"]
    assert lines_with(out.stdout, "LOCAL") == lines_with(out.stdout, "REMOTE")


def test_package_run_as_a_module(make_shape):
    proj = make_shape("package")
    proj.write(
        "app/cli.py",
        """
        from app.a import hello

        if __name__ == "__main__":
            print("REMOTE", hello("mod"))
    """,
    )
    out = run_sdk(proj.root, "-m", "app.cli")
    assert out.returncode == 0, out.stderr
    assert lines_with(out.stdout, "REMOTE") == ["hello mod v0"]


def test_src_layout_with_pyproject(make_shape):
    proj = make_shape("src_layout")
    # as after `pip install -e .`: the user's Python imports mypkg from src/
    out = run_sdk(proj.root, "run.py", "rain", env=sdk_env(PYTHONPATH=str(proj.root / "src")))
    assert out.returncode == 0, out.stderr
    assert lines_with(out.stdout, "REMOTE") == ["PREDICTED RAIN/mypkg.util"]
    assert lines_with(out.stdout, "LOCAL") == lines_with(out.stdout, "REMOTE")


def test_namespace_package(make_shape):
    proj = make_shape("namespace")
    out = run_sdk(proj.root, "main.py", "x")
    assert out.returncode == 0, out.stderr
    assert lines_with(out.stdout, "REMOTE") == ["<x> from ns.tools.helpers"]
    assert lines_with(out.stdout, "LOCAL") == lines_with(out.stdout, "REMOTE")


def test_data_files_read_at_import(make_shape):
    proj = make_shape("data_files")
    out = run_sdk(proj.root, "main.py")
    assert out.returncode == 0, out.stderr
    assert lines_with(out.stdout, "REMOTE") == ["a lighthouse at dusk in oil"]
    assert lines_with(out.stdout, "LOCAL") == lines_with(out.stdout, "REMOTE")


def test_stdlib_named_module_is_refused_naming_the_file(make_shape):
    proj = make_shape("stdlib_named")
    out = run_sdk(proj.root, "main.py")
    assert out.returncode != 0
    assert "REMOTE" not in out.stdout
    assert "calendar.py" in out.stderr and "standard-library module 'calendar'" in out.stderr, (
        out.stderr
    )
    assert "Rename it" in out.stderr


def test_stdlib_named_module_in_the_current_folder_never_reaches_the_runtime(make_shape, tmp_path):
    """A json.py in the folder the user runs from: the embedded runtime and its workers must
    not import it in place of the standard library's (it used to crash the runtime at start)."""
    proj = make_shape("package")
    proj.write("json.py", "raise RuntimeError('the project json.py was imported by the runtime')\n")
    slipstream = str(
        Path(sys.executable).with_name("slipstream")
    )  # the console script, as a user runs it
    out = subprocess.run(
        [slipstream, "run", "main.py", "ada"],
        cwd=proj.root,
        env=sdk_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # the user's own process never imports json.py here (slipstream already has the real one),
    # so the only way to fail is the runtime or a worker importing it
    assert "the project json.py was imported by the runtime" not in out.stdout + out.stderr
    assert "json.py" in out.stderr and "standard-library module 'json'" in out.stderr, out.stderr
    assert out.returncode != 0


def test_an_editable_install_on_sys_path_does_not_replace_the_workers(runtime, tmp_path):
    """`pip install -e` of any package puts `__editable__.<name>.finder.__path_hook__` (no
    folder) on sys.path. It is not one of the project's import folders: a script run with it
    and one run without must deploy the same paths, so the second finds the same warm worker
    (and the keep()-held models in it) instead of replacing it."""
    from tests.conftest import remove_project

    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    (root / "app.py").write_text(
        "import os\nfrom slipstream import endpoint\n\n@endpoint(gpu='T4')\ndef pid() -> int:\n    return os.getpid()\n\n"
        "if __name__ == '__main__':\n    print('PID', pid())\n"
    )
    site = tmp_path / "site"  # as site-packages' __editable__ .pth does at start-up
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nsys.path.append('__editable__.mylib-0.1.finder.__path_hook__')\n"
    )
    env = sdk_env(SLIPSTREAM_RUNTIME_URL=runtime.url, SLIPSTREAM_TOKEN=runtime.token)
    try:
        first = run_sdk(root, "app.py", env={**env, "PYTHONPATH": str(site)})
        second = run_sdk(root, "app.py", env=env)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        assert lines_with(first.stdout, "PID") == lines_with(second.stdout, "PID"), (
            "the worker was replaced"
        )
    finally:
        remove_project(runtime, root)
