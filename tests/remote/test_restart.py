"""A served runtime survives its own restart: its store is a persistent folder, and at start it
deploys each project's last committed generation again, before any client syncs. The model
hub cache (HF_HOME) defaults to a persistent folder on the runtime's host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_runtime, write_project

APP = """
    import os
    from slipstream import endpoint

    VERSION = {version}

    @endpoint
    def version() -> int:
        return VERSION

    @endpoint
    def hf_home() -> str:
        return os.environ.get("HF_HOME", "")
"""


def _call(url: str, token: str, project: str, name: str):
    from slipstream.sdk.client import RuntimeClient

    client = RuntimeClient(url, token, project=project)
    try:
        out = client.call(name, None, (), {}, timeout=60)
        assert out.error is None, out.error
        return out.value
    finally:
        client.close()


@pytest.mark.slow
def test_a_restarted_runtime_serves_the_last_generation_before_any_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.config import project_key

    monkeypatch.delenv("HF_HOME", raising=False)
    home = tmp_path / "home"
    store = home / "store"
    env = {"SLIPSTREAM_HOME": str(home)}
    root = write_project(tmp_path / "app", {"app.py": APP.format(version=1)})
    other = write_project(tmp_path / "other", {"app.py": APP.format(version=100)})
    key, other_key = project_key(root), project_key(other)

    rt = start_runtime("--gpu-fallback", "--store", str(store), env=env)
    try:
        client = RuntimeClient(rt.url, rt.token)
        client.sync(root)
        (root / "app.py").write_text(__import__("textwrap").dedent(APP.format(version=2)))
        assert client.sync(root).generation  # the last committed generation: version 2
        RuntimeClient(rt.url, rt.token).sync(other)
        assert _call(rt.url, rt.token, key, "version") == 2
        client.close()
    finally:
        rt.stop()

    rt = start_runtime("--gpu-fallback", "--store", str(store), token=rt.token, env=env)
    try:
        # no client has synced this process: both projects answer at once, each its own code
        assert _call(rt.url, rt.token, key, "version") == 2
        assert _call(rt.url, rt.token, other_key, "version") == 100
        assert _call(rt.url, rt.token, key, "hf_home") == str(home / "hf")
        status = RuntimeClient(rt.url, rt.token).status()
        assert sorted(p["key"] for p in status["projects"]) == sorted([key, other_key])
        assert status["runtime"]["persistent_store"] is True
        # the previous process's generations are gone; only the live one is kept
        gens = sorted(p.name for p in (store / "gens" / key).glob("g*"))
        assert len(gens) == 1, gens
        # a sync of the same files changes nothing: the runtime serves them already
        before = {p["key"]: p["generation"] for p in status["projects"]}
        res = RuntimeClient(rt.url, rt.token).sync(root)
        assert res.unchanged and res.generation == before[key]
    finally:
        rt.stop()


@pytest.mark.slow
def test_a_project_that_no_longer_deploys_is_reported_and_the_others_are_served(
    tmp_path: Path,
) -> None:
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.config import project_key

    store = tmp_path / "store"
    good = write_project(tmp_path / "good", {"app.py": APP.format(version=7)})
    bad = write_project(tmp_path / "bad", {"app.py": APP.format(version=8)})
    rt = start_runtime("--gpu-fallback", "--store", str(store))
    try:
        RuntimeClient(rt.url, rt.token).sync(good)
        RuntimeClient(rt.url, rt.token).sync(bad)
    finally:
        rt.stop()
    # the bad project's saved generation now names a file the store lost
    state_file = store / "gens" / project_key(bad) / ".current.json"
    state = json.loads(state_file.read_text())
    (store / "blobs" / state["files"]["app.py"]).unlink()
    rt = start_runtime("--gpu-fallback", "--store", str(store), token=rt.token)
    try:
        assert _call(rt.url, rt.token, project_key(good), "version") == 7
        status = RuntimeClient(rt.url, rt.token).status()
        assert [p["key"] for p in status["projects"]] == [project_key(good)]
        assert f"could not serve {project_key(bad)} again after the restart" in rt.log.read_text()
    finally:
        rt.stop()


def _serve(env: dict[str, str], ready: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, "SLIPSTREAM_TOKEN": "t" * 20, **env}
    full.pop("SLIPSTREAM_STORE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "slipstream", "serve", "--port", "0", "--ready-file", str(ready)],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path) -> dict:
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "runtime did not start"
        time.sleep(0.02)
    return json.loads(ready.read_text())


def test_the_default_store_is_persistent_and_one_runtime_owns_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"SLIPSTREAM_HOME": str(home)}
    first = _serve(env, tmp_path / "r1.json")
    second = None
    try:
        info = _wait_ready(first, tmp_path / "r1.json")
        assert info["temp_store"] is None
        assert (home / "store" / ".lock").is_file()
        # a second runtime on the same host does not share the folder: it gets a temporary one
        second = _serve(env, tmp_path / "r2.json")
        info2 = _wait_ready(second, tmp_path / "r2.json")
        assert info2["temp_store"] and not info2["temp_store"].startswith(str(home))
        second.terminate()
        err = second.communicate(timeout=30)[1].decode()
        assert "another runtime on this host uses" in err and "--store" in err
        # naming the folder explicitly is refused instead
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "slipstream",
                "serve",
                "--port",
                "0",
                "--store",
                str(home / "store"),
            ],
            env={**os.environ, "SLIPSTREAM_TOKEN": "t" * 20},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2 and "give this one its own --store" in p.stderr
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def test_the_embedded_runtime_keeps_a_temporary_store() -> None:
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.embedded import EmbeddedRuntime

    emb = EmbeddedRuntime.start()
    try:
        health = RuntimeClient(emb.url, emb.token).health()
        assert health["persistent_store"] is False
        temp = emb.info.get("temp_store")
        assert temp and Path(temp).is_dir()
    finally:
        emb.stop()
    assert not Path(temp).exists()
