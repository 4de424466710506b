"""Code sync when the editor writes a file again while the sync runs."""

from __future__ import annotations

import time

import pytest

from slipstream.sdk.sync import sync_project


def test_a_file_rewritten_mid_sync_is_synced_with_its_new_content(
    runtime, project_factory, monkeypatch
):
    from slipstream.sdk import sync

    proj = project_factory(
        runtime,
        {"app.py": "from slipstream import endpoint\n\n@endpoint\ndef v():\n    return 1\n"},
    )
    client = runtime.client()
    real_manifest = sync.scan_project
    rewritten = []

    def manifest(root):
        out = real_manifest(root)
        if not rewritten:  # a formatter saves the file after it was hashed, before its upload
            rewritten.append(True)
            proj.write(
                "app.py", "from slipstream import endpoint\n\n@endpoint\ndef v():\n    return 2\n"
            )
        return out

    monkeypatch.setattr(sync, "scan_project", manifest)
    res = sync_project(client, proj.root)
    assert rewritten and res.generation
    assert client.call_json("v")["result"] == 2


TREE_APP = '''
import os
from slipstream import endpoint

@endpoint
def tree():
    """Every file of the generation the worker runs, relative to it."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for d, _, names in os.walk(here):
        out += [os.path.relpath(os.path.join(d, n), here) for n in names]
    return sorted(p for p in out if not p.endswith(".pyc"))  # .pyc: written by the import itself
'''

EXCLUDED = [
    ".git/hooks/pre_commit.py",
    ".git/config.txt",
    ".hg/store.txt",
    ".venv/lib/site.py",
    "venv/pyvenv.cfg",  # an environment by what is inside it, whatever its name
    "venv/lib/site.py",
    "pyenv/conda-meta/history",
    "pyenv/lib/site.py",
    ".env/x.py",
    "node_modules/left-pad/package.json",
    "__pycache__/helper.py",
    ".mypy_cache/3.11/app.json",
    ".pytest_cache/v/cache.json",
    ".ruff_cache/x.json",
    ".tox/py/x.py",
    "mypkg.egg-info/top_level.txt",
    ".ipynb_checkpoints/n.py",
    ".secrets/keys.py",
    "pkg/.hidden/x.py",  # any dot-folder, at any depth
    "data/train.csv",
    "data/more/val.csv",
    "scratch_1.py",  # [sync] exclude patterns
    "pkg/weights.bin",
    "notes.swp",
    "app.py~",  # not code or config
]
KEPT = [
    "app.py",
    "build/lib/app.py",  # env/, build/, dist/ are packages here: no environment inside
    "config.json",
    "dist/app.txt",
    "env/lib/site.py",
    "pkg/__init__.py",
    "pkg/mod.py",
    "pkg/prompts.yaml",
    "slipstream.toml",
]


def test_vcs_environments_caches_dot_folders_and_excluded_patterns_never_reach_the_runtime(
    runtime, project_factory
):
    files = {rel: "X = 1\n" for rel in [*EXCLUDED, *KEPT]}
    files["app.py"] = TREE_APP
    files["slipstream.toml"] = (
        '[project]\nname = "excl"\n\n[sync]\nexclude = ["data/*", "scratch_*.py"]\n'
    )
    proj = project_factory(runtime, files)
    proj.sync()
    assert proj.module("app").tree() == KEPT, "the runtime's copy holds exactly the project's code"


DATA_APP = """
from pathlib import Path
from slipstream import endpoint

TEMPLATE = (Path(__file__).parent / "templates" / "page.html").read_text()

@endpoint
def render(name: str) -> str:
    return TEMPLATE.replace("NAME", name)
"""


def test_a_data_file_read_at_import_that_is_not_code_is_named_with_how_to_sync_it(
    runtime, project_factory
):
    """An .html template read at import is not synced by default (only code and config
    suffixes are): the refusal names the file and the [sync] include line that syncs it; with
    that line the project deploys and serves the file."""
    from slipstream.protocol.errors import DeployError

    proj = project_factory(runtime, {"app.py": DATA_APP, "templates/page.html": "<h1>NAME</h1>"})
    try:
        proj.sync()
    except DeployError as exc:
        text = str(exc)
    else:
        raise AssertionError("an import that reads a file left out of the sync deployed")
    assert (
        "FileNotFoundError" in text
        and "templates/page.html is not on the runtime: the sync left it out (not code or config"
        in text
    ), text
    assert 'add [sync] include = ["*.html"] to slipstream.toml' in text, text
    proj.write(
        "app.py", DATA_APP + "# edited, still reading the file\n"
    )  # refused again: as fast, as clear
    started = time.monotonic()
    with pytest.raises(DeployError, match="templates/page.html is not on the runtime"):
        proj.sync()  # the first refusal left its scanner nothing to roll back to: this hung 120 s (DeployTimeout)
    assert time.monotonic() - started < 30
    proj.write("slipstream.toml", '[project]\nname = "test"\n\n[sync]\ninclude = ["*.html"]\n')
    proj.sync()
    assert proj.module("app").render("ada") == "<h1>ada</h1>"
