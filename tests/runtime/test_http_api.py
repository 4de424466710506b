"""The runtime's HTTP surface as curl and other plain clients see it."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_runtime

APP = """
from slipstream import endpoint

@endpoint(gpu="H100", example={"name": "world"})
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"

@endpoint
def picture(width: int = 8, height: int = 4):
    from PIL import Image
    return Image.new("RGB", (width, height), (255, 0, 0))
"""


@pytest.fixture()
def synced(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": APP})
    proj.sync()
    return runtime


def _h(rt, token=None):
    return {"Authorization": f"Bearer {token or rt.token}"}


def test_health_needs_no_token_and_lists_gpus(runtime):
    r = httpx.get(f"{runtime.url}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["gpus"] == [] and body["backend"] == "local"


@pytest.mark.parametrize("path", ["/v1/endpoints", "/metrics", "/openapi.json", "/v1/logs"])
def test_everything_but_health_needs_the_token(runtime, path):
    assert httpx.get(f"{runtime.url}{path}").status_code == 401
    assert httpx.get(f"{runtime.url}{path}", headers=_h(runtime, "wrong")).status_code == 401


def test_call_without_token_is_refused(synced):
    r = httpx.post(f"{synced.url}/v1/endpoints/greet/call", json={"kwargs": {"name": "x"}})
    assert r.status_code == 401 and "token" in r.json()["error"]["message"]


def test_json_call_returns_result_and_metering(synced):
    r = httpx.post(
        f"{synced.url}/v1/endpoints/greet/call",
        json={"kwargs": {"name": "curl"}},
        headers=_h(synced),
    )
    body = r.json()
    assert r.status_code == 200, body
    assert body["result"] == "hello curl!" and body["gpu"] == "H100" and body["cost_usd"] > 0


def test_json_call_returns_images_as_png(synced):
    r = httpx.post(
        f"{synced.url}/v1/endpoints/picture/call", json={"kwargs": {"width": 5}}, headers=_h(synced)
    )
    img = r.json()["result"]["$image"]
    assert (img["width"], img["height"]) == (5, 4) and img["png"]


def test_unknown_endpoint_is_404_with_the_known_ones(synced):
    r = httpx.post(f"{synced.url}/v1/endpoints/nope/call", json={}, headers=_h(synced))
    assert r.status_code == 404 and "greet" in r.json()["error"]["message"]


def test_wrong_argument_names_are_422(synced):
    r = httpx.post(
        f"{synced.url}/v1/endpoints/greet/call", json={"kwargs": {"nam": "x"}}, headers=_h(synced)
    )
    assert r.status_code == 422
    assert "name" in r.json()["error"]["message"]


def test_malformed_json_is_400(synced):
    r = httpx.post(
        f"{synced.url}/v1/endpoints/greet/call",
        content=b"{nope",
        headers={**_h(synced), "content-type": "application/json"},
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_wrong_content_type_is_415(synced):
    r = httpx.post(
        f"{synced.url}/v1/endpoints/greet/call",
        content=b"x",
        headers={**_h(synced), "content-type": "text/plain"},
    )
    assert r.status_code == 415


def test_endpoints_listing_shows_pool_and_stats(synced):
    httpx.post(
        f"{synced.url}/v1/endpoints/greet/call", json={"kwargs": {"name": "a"}}, headers=_h(synced)
    )
    eps = {
        e["name"]: e
        for e in httpx.get(f"{synced.url}/v1/endpoints", headers=_h(synced)).json()["endpoints"]
    }
    g = eps["greet"]
    assert g["gpu"] == "H100" and g["stats"]["calls"] >= 1 and g["pool"]["max"] == 1
    assert "runs on the CPU" in g["note"]


def test_metrics_are_prometheus_text(synced):
    httpx.post(
        f"{synced.url}/v1/endpoints/greet/call", json={"kwargs": {"name": "a"}}, headers=_h(synced)
    )
    text = httpx.get(f"{synced.url}/metrics", headers=_h(synced)).text
    assert 'slipstream_calls_total{endpoint="greet",gpu="H100",project="test-' in text


def test_openapi_describes_the_api(synced):
    spec = httpx.get(f"{synced.url}/openapi.json", headers=_h(synced)).json()
    assert "/v1/endpoints/{name}/call" in spec["paths"] and "/v1/generations" in spec["paths"]


def test_live_logs_stream_as_server_sent_events(synced):
    httpx.post(
        f"{synced.url}/v1/endpoints/greet/call", json={"kwargs": {"name": "a"}}, headers=_h(synced)
    )
    with httpx.stream(
        "GET", f"{synced.url}/v1/logs", headers=_h(synced), params={"backlog": 20}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
    assert "text" in first


def test_runtime_without_the_gpu_refuses_with_a_clear_message(project_factory):
    rt = start_runtime()  # no --gpu-fallback: a real remote runtime
    try:
        proj = project_factory(rt, {"app.py": APP})
        proj.sync()
        r = httpx.post(
            f"{rt.url}/v1/endpoints/greet/call", json={"kwargs": {"name": "x"}}, headers=_h(rt)
        )
        assert r.status_code == 503
        msg = r.json()["error"]["message"]
        assert "H100" in msg and "no GPU" in msg and "--gpu-fallback" in msg
        ok = httpx.post(f"{rt.url}/v1/endpoints/picture/call", json={}, headers=_h(rt))
        assert ok.status_code == 200, "a CPU endpoint still runs"
    finally:
        rt.stop()


def test_binding_beyond_loopback_without_a_token_is_refused():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "token" in p.stderr


def test_dev_beyond_loopback_without_a_token_is_refused(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "dev", str(tmp_path), "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "without a token" in p.stderr and "--token" in p.stderr


def test_dev_with_a_token_refuses_requests_without_it(tmp_path):
    from types import SimpleNamespace

    from starlette.testclient import TestClient

    from slipstream.sdk.devserver import create_dev_app

    state = SimpleNamespace(endpoints=[], root=tmp_path, generation="g", last_error="")
    client = TestClient(create_dev_app(state, "s3cret"))  # type: ignore[arg-type]
    assert client.get("/openapi.json").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/ping", json={}, headers=wrong).status_code == 401
    ok = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and "paths" in ok.json()


def test_serve_pins_the_data_channel_port():
    import socket

    from tests.conftest import start_runtime

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = start_runtime("--data-port", str(port))
    try:
        assert httpx.get(f"{rt.url}/health").json()["data_port"] == port
    finally:
        rt.stop()


def test_embedded_runtime_stops_with_the_process_that_started_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "starter.py"
    script.write_text(
        "import time\nfrom slipstream.sdk.embedded import EmbeddedRuntime\n"
        "rt = EmbeddedRuntime.start()\nprint(rt.proc.pid, flush=True)\ntime.sleep(60)\n"
    )
    starter = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    runtime_pid = int(starter.stdout.readline())
    os.kill(starter.pid, signal.SIGKILL)  # no atexit, no cleanup: like an editor being killed
    starter.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            state = open(f"/proc/{runtime_pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):  # exited; only waiting for a parent to reap it
            return
        time.sleep(0.2)
    raise AssertionError("the embedded runtime outlived its parent")
