"""The editor's Run against a real runtime: every retry the runtime made is in the run result
(and so on the card), a CUDA out-of-memory move shows the GPU it moved to, and the endpoint's
secrets= travel with the run (from the daemon's environment or the project's .env), a missing
one being an error result that names it. Faked GPU inventory: one H100, one A100-80GB."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon

from tests.conftest import start_runtime

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

RESULT = "slipstream/runResult"
FROM_ENV = "env-value-7c1f9a"
FROM_DOTENV = "dotenv-value-42b8e0"

APP = """
import os
from pathlib import Path
from slipstream import endpoint, Retries


@endpoint(workers=1, retries=Retries(2, backoff=0.05))
def crash_once(path: str) -> str:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n == 1:
        os._exit(3)  # the worker dies mid-call; the runtime runs the call again
    return f"ok on attempt {n}"


@endpoint(gpu=["H100", "A100-80GB"], workers=1)
def big() -> str:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "0":  # the H100 of the faked inventory
        import torch
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return "fits on the A100-80GB"


@endpoint(secrets=["SLIP_J_FROM_ENV", "SLIP_J_FROM_DOTENV"])
def uses_secrets() -> str:
    print("the token is", os.environ["SLIP_J_FROM_ENV"])
    return f"{len(os.environ['SLIP_J_FROM_ENV'])} {len(os.environ['SLIP_J_FROM_DOTENV'])}"


@endpoint(secrets=["SLIP_J_NOWHERE"])
def needs_missing() -> str:
    return "never runs"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = (tmp_path_factory.mktemp("retries") / "retryapp").resolve()
    root.mkdir()
    (root / "slipstream.toml").write_text('[project]\nname = "retryapp"\n')
    (root / "app.py").write_text(textwrap.dedent(APP))
    (root / ".env").write_text(f"SLIP_J_FROM_DOTENV={FROM_DOTENV}\n")
    return root


@pytest.fixture(scope="module")
def gpu_runtime() -> Any:
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100,A100-80GB"})
    yield rt
    rt.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(project: Path, gpu_runtime: Any) -> AsyncIterator[Client]:
    client = await start_daemon(
        project,
        {
            "SLIPSTREAM_RUNTIME_URL": gpu_runtime.url,
            "SLIPSTREAM_TOKEN": gpu_runtime.token,
            "SLIP_J_FROM_ENV": FROM_ENV,
        },
    )
    client.open(project / "app.py")
    yield client
    await client.shutdown_session()
    await client.stop()


async def _run(client: Client, project: Path, endpoint: str, **kwargs: Any) -> dict[str, Any]:
    seen = len(client.notes_of(RESULT))
    arg: dict[str, Any] = {"uri": (project / "app.py").as_uri(), "endpoint": endpoint}
    if kwargs:
        arg["kwargs"] = kwargs
    reply = await client.command("slipstream.server.run", arg)
    return await client.next_note(RESULT, timeout=120, since=seen, runId=reply["runId"])


async def test_a_retried_crash_is_in_the_run_result(
    client: Client, project: Path, tmp_path: Path
) -> None:
    result = await _run(client, project, "crash_once", path=str(tmp_path / "attempts"))
    assert result["status"] == "ok" and result["text"] == "ok on attempt 2", result
    (retry,) = result["retries"]
    assert retry["reason"] == "worker crashed" and retry["attempt"] == 1
    assert "exited with code 3" in retry["message"] and retry["type"] == "WorkerCrashed"
    plain = await _run(client, project, "uses_secrets")
    assert "retries" not in plain, "a run that was not retried carries none"


async def test_cuda_out_of_memory_shows_the_gpu_it_moved_to(client: Client, project: Path) -> None:
    result = await _run(client, project, "big")
    assert result["status"] == "ok" and result["text"] == "fits on the A100-80GB", result
    assert result["gpu"].startswith("H100 → A100-80GB")
    (moved,) = result["retries"]
    assert (
        moved["reason"] == "CUDA out of memory on H100, moved to A100-80GB"
        and moved["movedTo"] == "A100-80GB"
    )


async def test_run_sends_the_endpoints_secrets(client: Client, project: Path) -> None:
    result = await _run(client, project, "uses_secrets")
    assert result["status"] == "ok", result
    assert result["text"] == f"{len(FROM_ENV)} {len(FROM_DOTENV)}", (
        "one from the daemon's environment, one from .env"
    )
    assert any("the token is ****" in e["text"] for e in result["logs"]), result["logs"]
    everything = json.dumps(
        [client.notes_of(m) for m in ("slipstream/runLog", RESULT, "slipstream/runStarted")]
    )
    assert FROM_ENV not in everything and FROM_DOTENV not in everything, (
        "a secret's value reached the editor"
    )


async def test_a_missing_secret_is_an_error_card_naming_it(client: Client, project: Path) -> None:
    result = await _run(client, project, "needs_missing")
    assert result["status"] == "error"
    error = result["error"]
    assert error["type"] == "MissingSecret"
    assert "'SLIP_J_NOWHERE'" in error["message"] and str(project / ".env") in error["message"]
    assert "export SLIP_J_NOWHERE=" in error["message"]


CHATTY = """
import time
from pathlib import Path
from slipstream import endpoint


@endpoint(workers=1)
def chatty(flag: str) -> str:
    print("waiting for the editor", flush=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if Path(flag).exists():
            return "released"
        time.sleep(0.05)
    return "never released: the live log line did not reach the editor"
"""


class _ForgettingProxy:
    """A plain forwarding proxy in front of a real runtime that, just before the first call of
    `endpoint`, has the runtime remove the project (as another client, or a restart, would):
    the runtime then answers that call with unknown-endpoint, a real reply."""

    def __init__(self, upstream: str, endpoint: str) -> None:
        import http.server
        import threading

        import httpx

        proxy = self
        self.forgot = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = (
                "HTTP/1.0"  # bodies end when the connection closes: streams pass through
            )

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                if (
                    self.command == "POST"
                    and f"/endpoints/{endpoint}/call" in self.path
                    and not proxy.forgot.is_set()
                ):
                    key = self.path.split("/v1/projects/", 1)[1].split("/", 1)[0]
                    httpx.delete(
                        f"{upstream}/v1/projects/{key}", headers=headers, timeout=60
                    ).raise_for_status()
                    proxy.forgot.set()
                with (
                    httpx.Client(timeout=None) as c,
                    c.stream(
                        self.command, upstream + self.path, headers=headers, content=body
                    ) as r,
                ):
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() not in (
                            "content-length",
                            "transfer-encoding",
                            "connection",
                            "content-encoding",
                        ):
                            self.send_header(k, v)
                    self.end_headers()
                    for chunk in r.iter_raw():
                        self.wfile.write(chunk)
                        self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_run_retried_after_the_runtime_lost_its_endpoint_keeps_its_live_logs(
    gpu_runtime: Any, tmp_path: Path
) -> None:
    """The call is sent again after a redeploy with the run's tag (it was dropped: the run's
    live log lines stopped, so the card showed nothing until the end). The endpoint waits until
    the editor has received its first line live, so a dropped tag shows as 'never released'."""
    root = (tmp_path / "chattyapp").resolve()
    root.mkdir()
    (root / "slipstream.toml").write_text('[project]\nname = "chattyapp"\n')
    (root / "app.py").write_text(textwrap.dedent(CHATTY))
    proxy = _ForgettingProxy(gpu_runtime.url, "chatty")
    editor = await start_daemon(
        root, {"SLIPSTREAM_RUNTIME_URL": proxy.url, "SLIPSTREAM_TOKEN": gpu_runtime.token}
    )
    try:
        uri = editor.open(root / "app.py")
        flag = tmp_path / "released"
        logs = len(editor.notes_of("slipstream/runLog"))
        results = len(editor.notes_of(RESULT))
        run = await editor.command(
            "slipstream.server.run",
            {"uri": uri, "endpoint": "chatty", "kwargs": {"flag": str(flag)}},
        )
        line = await editor.next_note(
            "slipstream/runLog", timeout=60, since=logs, runId=run["runId"]
        )
        assert "waiting for the editor" in line["text"]
        flag.write_text("")
        result = await editor.next_note(RESULT, timeout=60, since=results, runId=run["runId"])
        assert proxy.forgot.is_set(), "the first call found no endpoint: the run was retried"
        assert result["status"] == "ok" and result["text"] == "released", result
    finally:
        await editor.shutdown_session()
        await editor.stop()
        proxy.close()
