"""Nothing silently lost: what a sync leaves out is decided by what a folder is, by .gitignore
and slipstream.toml, each skip is listed with its rule, links are followed, and a call failing
on a skipped path says which rule skipped it and how to sync it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipstream.sdk import sync
from slipstream.sdk.sync import build_manifest
from tests.reliability.helpers import count_uploads

RL_APP = """
from slipstream import endpoint
from env.cartpole import step
from build.tools import version
from out import results
from dist.sampler import sample

@endpoint
def rollout(n: int) -> list:
    return [step(i) for i in range(n)] + [version(), results.BEST, sample()]
"""


def test_an_rl_project_with_env_build_out_dist_packages_syncs_and_imports(runtime, project_factory):
    """Folders named env/, build/, out/, dist/ are packages here, not environments: they sync
    and import; a real virtualenv (pyvenv.cfg inside) or conda environment is left out and
    listed as one."""
    proj = project_factory(
        runtime,
        {
            "app.py": RL_APP,
            "env/__init__.py": "",
            "env/cartpole.py": "def step(i):\n    return i * 2\n",
            "build/__init__.py": "",
            "build/tools.py": "def version():\n    return 'b1'\n",
            "out/__init__.py": "",
            "out/results.py": "BEST = 0.9\n",
            "dist/__init__.py": "",
            "dist/sampler.py": "def sample():\n    return 's'\n",
            "venv/pyvenv.cfg": "home = /usr/bin\n",
            "venv/lib/site.py": "X = 1\n",
            "conda/conda-meta/history": "",
            "conda/lib/site.py": "X = 1\n",
        },
    )
    res = proj.sync()
    assert proj.module("app").rollout(2) == [0, 2, "b1", 0.9, "s"]
    assert "venv/: a virtualenv (pyvenv.cfg)" in res.skipped, res.skipped
    assert "conda/: a conda environment (conda-meta/)" in res.skipped, res.skipped
    files, _, _ = build_manifest(proj.root)
    assert not any(f.startswith(("venv/", "conda/")) for f in files)


TREE_APP = """
import os
from slipstream import endpoint

@endpoint
def tree() -> list:
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for d, dirs, names in os.walk(here):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        out += [os.path.relpath(os.path.join(d, n), here) for n in names]
    return sorted(out)
"""


def test_gitignore_is_honoured_as_git_does_and_sync_include_wins(
    runtime, project_factory, monkeypatch
):
    """A 10 MB file .gitignore lists is not uploaded; a `!` line brings one back; nested
    .gitignore files, folder and anchored patterns apply as in git; [sync] include wins over
    them; each skip is listed with its .gitignore line."""
    big = "x" * (10 * 1024 * 1024)
    proj = project_factory(
        runtime,
        {
            "app.py": TREE_APP,
            ".gitignore": "# data\n*.csv\n!keep.csv\nlogs/\n/top.json\n",
            "big.csv": big,
            "keep.csv": "a,b\n",
            "logs/run.json": "{}",
            "top.json": "{}",
            "pkg/top.json": "{}",  # /top.json is anchored to the root
            "pkg/.gitignore": "gen_*.py\n",
            "pkg/gen_a.py": "X = 1\n",
            "pkg/real.py": "X = 1\n",
            "weights/w.csv": "1\n",
        },
    )
    proj.write("slipstream.toml", '[project]\nname = "gi"\n\n[sync]\ninclude = ["weights/*.csv"]\n')
    sent = count_uploads(monkeypatch)
    res = proj.sync()
    assert sum(sent) < 1024 * 1024, f"{sum(sent)} bytes uploaded: the ignored 10 MB went up"
    assert proj.module("app").tree() == [
        "app.py",
        "keep.csv",
        "pkg/real.py",
        "pkg/top.json",
        "slipstream.toml",
        "weights/w.csv",
    ]
    for line in [
        "big.csv: .gitignore:2 '*.csv'",
        "logs/: .gitignore:4 'logs/'",
        "top.json: .gitignore:5 '/top.json'",
        "pkg/gen_a.py: pkg/.gitignore:1 'gen_*.py'",
    ]:
        assert line in res.skipped, res.skipped


LINK_APP = """
from pathlib import Path
from slipstream import endpoint
from helper import GREETING

@endpoint
def read() -> list:
    here = Path(__file__).parent
    return [GREETING, (here / "data" / "labels.txt").read_text()]
"""


def test_a_symlinked_module_and_data_folder_work_on_the_runtime(
    runtime, project_factory, tmp_path: Path
):
    """Links are followed: their content syncs under the link's path; a broken link and a loop
    are skipped and listed."""
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "helper.py").write_text("GREETING = 'hi'\n")
    (shared / "data" / "labels.txt").write_text("cat,dog\n")
    proj = project_factory(runtime, {"app.py": LINK_APP})
    (proj.root / "helper.py").symlink_to(shared / "helper.py")
    (proj.root / "data").symlink_to(shared / "data", target_is_directory=True)
    (proj.root / "gone.py").symlink_to(tmp_path / "nowhere.py")
    (proj.root / "data_loop").symlink_to(proj.root, target_is_directory=True)
    os.symlink("self.py", proj.root / "self.py")
    res = proj.sync()
    assert proj.module("app").read() == ["hi", "cat,dog\n"]
    assert f"gone.py: a broken symlink (-> {tmp_path / 'nowhere.py'})" in res.skipped
    assert f"data_loop/: a symlink loop (-> {proj.root})" in res.skipped
    assert "self.py: a symlink loop (-> self.py)" in res.skipped


MISSING_APP = """
from pathlib import Path
from slipstream import endpoint

@endpoint
def load() -> str:
    return (Path(__file__).parent / "data" / "train.bin").read_text()

@endpoint
def relative() -> str:
    return open("data/train.bin").read()

@endpoint
def generated() -> str:
    import protos.api
    return protos.api.NAME

@endpoint
def absent() -> str:
    return (Path(__file__).parent / "nothing.txt").read_text()
"""


def test_a_call_failing_on_a_skipped_path_names_the_rule_and_how_to_sync_it(
    runtime, project_factory
):
    proj = project_factory(
        runtime,
        {
            "app.py": MISSING_APP,
            ".gitignore": "data/\nprotos/\n",
            "data/train.bin": "weights",
            "protos/__init__.py": "",
            "protos/api.py": "NAME = 'api'\n",
        },
    )
    proj.sync()
    app = proj.module("app")
    with pytest.raises(FileNotFoundError) as err:
        app.load()
    text = str(err.value)
    assert "data/ is not on the runtime: the sync left it out (.gitignore:1 'data/')" in text
    assert '[sync] include = ["data/*"] to slipstream.toml' in text, text
    with pytest.raises(FileNotFoundError, match=r"\.gitignore:1 'data/'"):
        app.relative()
    with pytest.raises(ModuleNotFoundError) as merr:
        app.generated()
    assert "protos/ is not on the runtime: the sync left it out (.gitignore:2 'protos/')" in str(
        merr.value
    )
    with pytest.raises(FileNotFoundError) as plain:
        app.absent()
    assert "not on the runtime" not in str(plain.value), "only skipped paths get the note"


def test_skips_are_listed_once_each_and_quiet_folders_not_at_all(tmp_path: Path):
    from tests.conftest import write_project

    root = write_project(
        tmp_path / "p",
        {
            "app.py": "X = 1\n",
            "img/a.png": "",
            "img/b.png": "",
            "notes.swp": "",
            ".git/config.py": "",
            "__pycache__/x.py": "",
            "huge.json": "",
        },
    )
    os.truncate(root / "huge.json", sync.MAX_FILE_BYTES + 1)
    _, _, lines = build_manifest(root)
    assert lines == [
        "huge.json: 16.8 MB, over the 16 MB per-file limit of a sync (load weights and data at "
        "run time: from storage, with keep())",
        'img/a.png, img/b.png: not code or config; add [sync] include = ["*.png"] to '
        "slipstream.toml to sync it",
    ]
