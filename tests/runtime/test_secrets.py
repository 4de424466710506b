"""secrets=[...] against a real runtime: values from the caller's environment or the project's
.env reach the worker's environment, and never appear in the runtime's files, logs, status,
metrics, OpenAPI or errors (a value printed by the endpoint is masked in the streamed logs);
a missing secret fails before the call, naming it and where it was looked for."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import httpx
import pytest

from slipstream.protocol.errors import SlipstreamError
from tests.conftest import start_runtime
from tests.reliability.helpers import HANG_BOUND_S, auth

APP = """
import hashlib, os
from slipstream import endpoint

def _sha(name):
    return hashlib.sha256(os.environ[name].encode()).hexdigest()

@endpoint(workers=1, secrets=["G_SECRET_TOKEN", "G_DOTENV_KEY"])
def use_secret(tag: str) -> dict:
    print(f"{tag}: the token is {os.environ['G_SECRET_TOKEN']}")
    return {"token": _sha("G_SECRET_TOKEN"), "dotenv": _sha("G_DOTENV_KEY")}

@endpoint(workers=1, secrets=["G_SECRET_TOKEN"])
def leak_in_error() -> None:
    raise RuntimeError("refused token " + os.environ["G_SECRET_TOKEN"])

@endpoint(workers=1)
def no_secrets() -> bool:
    return "G_SECRET_TOKEN" in os.environ
"""


def _sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("secret-store")


@pytest.fixture(scope="module")
def rt(store):
    r = start_runtime("--store", str(store))
    yield r
    r.stop()


def test_a_secret_reaches_the_worker_and_never_the_runtimes_files_or_logs(
    rt, store, project_factory, monkeypatch, capsys
):
    token, dotenv_value = "tok-" + secrets.token_hex(16), "dot-" + secrets.token_hex(16)
    monkeypatch.setenv("G_SECRET_TOKEN", token)
    monkeypatch.delenv("G_DOTENV_KEY", raising=False)
    proj = project_factory(
        rt, {"sec_app.py": APP, ".env": f"# local secrets\nexport G_DOTENV_KEY='{dotenv_value}'\n"}
    )
    app = proj.module("sec_app")

    assert app.use_secret("call") == {"token": _sha(token), "dotenv": _sha(dotenv_value)}
    assert list(app.use_secret.map(["m1", "m2"]))[0]["token"] == _sha(token)
    assert app.use_secret.spawn("spawned").get()["dotenv"] == _sha(dotenv_value)
    out = capsys.readouterr().out
    assert "call: the token is ****" in out and token not in out, (
        "a printed value is masked in the streamed logs"
    )
    with pytest.raises(RuntimeError) as exc:
        app.leak_in_error()
    assert "refused token ****" in str(exc.value) and token not in str(exc.value)
    assert token not in "".join(str(c) for c in (exc.value.__cause__, exc.value.__context__))
    assert app.no_secrets() is False, "only the endpoints that name a secret get it"

    def get(path: str) -> str:
        return httpx.get(f"{rt.url}{path}", headers=auth(rt), timeout=HANG_BOUND_S).text

    status = get("/v1/endpoints")
    assert '"G_SECRET_TOKEN"' in status, "the spec shows the names"
    logs = ""
    with httpx.stream(
        "GET",
        f"{rt.url}/v1/logs",
        params={"backlog": 2000, "keepalive": 0.2},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    ) as r:
        for line in r.iter_lines():
            if line.startswith(":"):
                break
            logs += line + "\n"
    assert "the token is ****" in logs
    shown = {
        "status": status,
        "logs": logs,
        "metrics": get("/metrics"),
        "openapi": get("/openapi.json"),
        "health": get("/health"),
    }
    for what, text in shown.items():
        assert token not in text and dotenv_value not in text, f"a secret in the runtime's {what}"
    on_disk = [p for p in [*store.rglob("*"), rt.log] if p.is_file() and not p.is_symlink()]
    assert any(p.name == "sec_app.py" for p in on_disk), "the scan covers the synced code"
    for p in on_disk:
        data = p.read_bytes()
        assert token.encode() not in data and dotenv_value.encode() not in data, (
            f"a secret on the runtime's disk: {p}"
        )


def test_a_missing_secret_fails_before_the_call_naming_it_and_where_it_was_looked_for(
    rt, project_factory, monkeypatch
):
    monkeypatch.delenv("G_SECRET_TOKEN", raising=False)
    monkeypatch.setenv("G_DOTENV_KEY", "from-the-environment")
    proj = project_factory(rt, {"sec_app.py": APP}, name="missing")
    app = proj.module("sec_app")
    proj.sync()
    before = json.loads(
        httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S).text
    )
    calls = sum(e["stats"]["calls"] for e in before["endpoints"] if e["name"] == "use_secret")
    for form in (
        lambda: app.use_secret("x"),
        lambda: list(app.use_secret.map(["x"])),
        lambda: app.use_secret.spawn("x"),
    ):
        with pytest.raises(SlipstreamError) as exc:
            form()
        msg = str(exc.value)
        assert "'G_SECRET_TOKEN'" in msg and str(proj.root / ".env") in msg and "environment" in msg
        assert "G_DOTENV_KEY" not in msg, "only the missing one is named"
    after = json.loads(
        httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S).text
    )
    assert (
        sum(e["stats"]["calls"] for e in after["endpoints"] if e["name"] == "use_secret") == calls
    ), "no call reached the runtime"


def test_an_edited_env_file_is_read_again(tmp_path):
    from slipstream.sdk.secretvals import resolve

    env = tmp_path / ".env"
    env.write_text("SLIPSTREAM_TEST_SECRET_X=first-value\n")
    assert resolve(("SLIPSTREAM_TEST_SECRET_X",), "f", tmp_path) == {
        "SLIPSTREAM_TEST_SECRET_X": "first-value"
    }
    env.write_text("SLIPSTREAM_TEST_SECRET_X=second-value-longer\n")
    assert resolve(("SLIPSTREAM_TEST_SECRET_X",), "f", tmp_path) == {
        "SLIPSTREAM_TEST_SECRET_X": "second-value-longer"
    }
