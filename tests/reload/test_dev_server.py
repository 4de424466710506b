"""`slipstream dev`: watch, reload on save, and serve each endpoint over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import write_project

APP = '''
from slipstream import endpoint

@endpoint(example={"name": "world"})
def greet(name: str, excited: bool = False) -> str:
    """Say hello."""
    return "hello " + name + ("!" if excited else "")

@endpoint
class Shop:
    def price(self, item: str) -> float:
        return 1.5
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out; last={last!r}")


@pytest.fixture()
def dev(tmp_path):
    root = write_project(tmp_path / "devproj", {"app.py": APP})
    port = _port()
    log = (tmp_path / "dev.log").open("w+")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: httpx.get(url + "/openapi.json").status_code == 200)
    yield root, url, log
    proc.terminate()
    proc.wait(20)


def test_routes_and_openapi_follow_the_signatures(dev):
    _, url, _ = dev
    spec = httpx.get(url + "/openapi.json").json()
    greet = spec["paths"]["/greet"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert greet["properties"]["name"] == {"type": "string"} and greet["required"] == ["name"]
    assert greet["example"] == {"name": "world"}
    assert "/Shop/price" in spec["paths"]
    assert (
        httpx.post(url + "/greet", json={"name": "curl", "excited": True}).json()["result"]
        == "hello curl!"
    )
    assert httpx.post(url + "/Shop/price", json={"item": "x"}).json()["result"] == 1.5
    assert httpx.post(url + "/greet", json={"nme": "x"}).status_code == 422


def test_a_save_is_live_and_logged_and_a_broken_save_keeps_serving(dev):
    root, url, log = dev
    (root / "app.py").write_text(APP.replace('"hello "', '"howdy "'))
    _wait(lambda: httpx.post(url + "/greet", json={"name": "a"}).json().get("result") == "howdy a")
    log.seek(0)
    assert "↻" in log.read() and "app.py" in open(log.name).read()
    (root / "app.py").write_text("from slipstream import endpoint\n\n@endpoint\ndef greet(name:\n")
    _wait(lambda: "✗" in open(log.name).read())
    assert "app.py:4" in open(log.name).read()
    assert httpx.post(url + "/greet", json={"name": "b"}).json()["result"] == "howdy b"


SECRET_APP = """
import hashlib, os
from slipstream import endpoint

@endpoint(secrets=["G_DEV_SECRET"])
def fingerprint() -> str:
    print("secret is", os.environ["G_DEV_SECRET"])
    return hashlib.sha256(os.environ["G_DEV_SECRET"].encode()).hexdigest()
"""


def test_secrets_come_from_the_dev_servers_environment_or_dotenv(tmp_path):
    import hashlib
    import secrets as pysecrets

    value = "dev-" + pysecrets.token_hex(12)
    root = write_project(
        tmp_path / "secretproj", {"app.py": SECRET_APP, ".env": f"G_DEV_SECRET={value}\n"}
    )
    port = _port()
    log = (tmp_path / "dev.log").open("w+")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN", "G_DEV_SECRET")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(url + "/openapi.json").status_code == 200)
        r = httpx.post(url + "/fingerprint", json={}, timeout=60)
        assert (
            r.status_code == 200
            and r.json()["result"] == hashlib.sha256(value.encode()).hexdigest()
        )
        assert value not in r.text and "secret is ****" in r.text, (
            "the printed value is masked in the call's logs"
        )
        (root / ".env").write_text("# emptied\n")
        r = httpx.post(url + "/fingerprint", json={}, timeout=60)
        assert r.status_code == 400 and "'G_DEV_SECRET'" in r.json()["error"]["message"]
        assert str(root / ".env") in r.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(20)
    log.seek(0)
    assert value not in log.read()


def test_dev_holds_its_projects_workers_warm_until_it_stops(tmp_path, runtime):
    from slipstream.sdk.config import project_key

    root = write_project(tmp_path / "heldproj", {"app.py": APP})
    port = _port()
    env = {**os.environ, "SLIPSTREAM_RUNTIME_URL": runtime.url, "SLIPSTREAM_TOKEN": runtime.token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(port)],
        stdout=(tmp_path / "dev.log").open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    auth = {"Authorization": f"Bearer {runtime.token}"}

    def sessions():
        projects = httpx.get(f"{runtime.url}/v1/projects", headers=auth).json()["projects"]
        mine = [p for p in projects if p["key"] == project_key(root)]
        return [s["client"] for s in mine[0]["sessions"]] if mine else None

    try:
        assert _wait(sessions) == ["dev"], "attached while dev runs"
    finally:
        proc.terminate()
        proc.wait(20)
    assert sessions() == [], "and the session ends with it: the idle clock starts"
    httpx.delete(f"{runtime.url}/v1/projects/{project_key(root)}", headers=auth)
