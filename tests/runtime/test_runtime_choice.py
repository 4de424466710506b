"""sdk/runtimes.configured_or_embedded: the one place that decides "the configured runtime, else
the embedded one" for the SDK session, `slipstream run`/`dev` and the editor's daemon."""

from __future__ import annotations

import os

import httpx
import pytest

from slipstream.sdk.config import load_project
from slipstream.sdk.runtimes import configured_or_embedded
from tests.conftest import remove_project, write_project


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN", "MY_TOKEN"):
        monkeypatch.setenv(name, "")  # recorded, so what export=True sets is undone after the test
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_environment_wins_over_slipstream_toml(tmp_path, clean_env):
    root = write_project(tmp_path / "p", {})
    (root / "slipstream.toml").write_text(
        '[runtime]\nurl = "http://10.0.0.5:8000/"\ntoken_env = "MY_TOKEN"\n'
    )
    clean_env.setenv("MY_TOKEN", "from-toml-env")
    chosen = configured_or_embedded(root, load_project(root))
    assert (chosen.url, chosen.token, chosen.is_embedded) == (
        "http://10.0.0.5:8000",
        "from-toml-env",
        False,
    )
    clean_env.setenv("SLIPSTREAM_RUNTIME_URL", "https://gpu.example:9000")
    chosen = configured_or_embedded(root, load_project(root))
    assert chosen.url == "https://gpu.example:9000" and not chosen.is_embedded


def test_an_unusable_url_says_which_setting_and_what_to_write(tmp_path, clean_env):
    root = write_project(tmp_path / "p", {})
    (root / "slipstream.toml").write_text('[runtime]\nurl = "gpu-box:8000"\n')
    with pytest.raises(
        ValueError, match=r"\[runtime\] url in slipstream.toml\): write http://host:port"
    ):
        configured_or_embedded(root, load_project(root))


def test_with_none_configured_the_embedded_runtime_is_started_and_stopped(tmp_path, clean_env):
    root = write_project(tmp_path / "p", {})
    chosen = configured_or_embedded(root, load_project(root), export=True)
    try:
        assert chosen.is_embedded and chosen.url.startswith("http://127.0.0.1:")
        assert os.environ["SLIPSTREAM_RUNTIME_URL"] == chosen.url, (
            "exported for what the process starts next"
        )
        assert os.environ["SLIPSTREAM_TOKEN"] == chosen.token
        health = httpx.get(
            f"{chosen.url}/health", headers={"Authorization": f"Bearer {chosen.token}"}, timeout=10
        )
        assert health.status_code == 200
    finally:
        chosen.stop()
    assert chosen.embedded is not None and chosen.embedded.proc.poll() is not None, (
        "stop() stops it"
    )


PINNED = """
import os
from slipstream import endpoint

@endpoint(runtime="box")
def pinned() -> str:
    return os.environ["SLIPSTREAM_RUNTIME_URL"]  # in a worker: the runtime it runs on

if __name__ == "__main__":
    print("RAN ON", pinned(), flush=True)
"""


def test_slipstream_run_leaves_a_runtimes_table_to_route(tmp_path, runtime):
    """With [runtimes] nothing is chosen for the script: `run` used to start an embedded runtime
    and put it in SLIPSTREAM_RUNTIME_URL, which made every endpoint run there."""
    import subprocess
    import sys

    root = write_project(tmp_path / "p", {"app.py": PINNED})
    (root / "slipstream.toml").write_text(
        f'[project]\nname = "p"\n\n[runtimes.box]\nurl = "{runtime.url}"\ntoken_env = "BOX_TOKEN"\n'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    try:
        p = subprocess.run(
            [sys.executable, "-m", "slipstream", "run", "app.py"],
            cwd=root,
            env={**env, "BOX_TOKEN": runtime.token},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        remove_project(runtime, root)
    assert p.returncode == 0, p.stderr
    assert f"RAN ON {runtime.url}\n" in p.stdout, p.stdout + p.stderr
    assert "SLIPSTREAM_RUNTIME_URL is set" not in p.stderr


def test_slipstream_toml_is_parsed_once_for_a_session_and_an_edit_is_seen(
    runtime, project_factory, monkeypatch
):
    """A session's start (root, project key, runtime choice, client) and its first sync each read
    slipstream.toml: parsed once while it is unchanged (it was parsed at every ask)."""
    import tomllib

    from slipstream.sdk import config

    proj = project_factory(
        runtime,
        {
            "toml_app.py": "from slipstream import endpoint\n\n@endpoint\ndef twice(x):\n    return 2 * x\n"
        },
    )
    text = (proj.root / "slipstream.toml").read_text()
    parses = []
    real = tomllib.loads
    monkeypatch.setattr(
        tomllib, "loads", lambda s, **kw: (parses.append(s == text), real(s, **kw))[1]
    )
    assert proj.module("toml_app").twice(21) == 42
    assert parses.count(True) == 1, f"slipstream.toml parsed {parses.count(True)} times"
    (proj.root / "slipstream.toml").write_text(text.replace('name = "test"', 'name = "renamed"'))
    assert config.load_project(proj.root).name == "renamed", "an edit is read again"
