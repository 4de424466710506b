"""No runtime token in user code: workers get a credential narrowed to their own project.

The runtime's token never reaches a worker's environment (a `print(dict(os.environ))` would put
it into the reply's logs, the client's terminal and /v1/logs); nested calls authenticate with a
per-project token the runtime derives, which reaches only that project's calls and routes. The
served runtime's code store is private to its user (0700).
"""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_runtime

APP = """
import os
from slipstream import endpoint

@endpoint
def env_dump():
    print(dict(os.environ))
    return os.environ.get("SLIPSTREAM_TOKEN", "")

@endpoint
def inner(x):
    return x * 2

@endpoint
def outer(x):
    return inner(x) + 1
"""

OTHER = """
from slipstream import endpoint

@endpoint
def secret_thing():
    return "other project's data"
"""


def test_workers_never_see_the_runtime_token_and_nested_calls_still_work(
    runtime, project_factory, capsys
):
    other = project_factory(runtime, {"other_app.py": OTHER}, name="other")
    assert other.module("other_app").secret_thing() == "other project's data"
    proj = project_factory(runtime, {"tokapp.py": APP})
    app = proj.module("tokapp")
    narrowed = app.env_dump()
    out = capsys.readouterr()
    assert runtime.token not in out.out + out.err, "the runtime's token reached user code"
    assert narrowed and narrowed != runtime.token, "workers get a project credential"
    assert app.outer(20) == 41, "a nested call authenticates with the narrowed credential"

    from slipstream.sdk.config import project_key

    own, theirs = project_key(proj.root), project_key(other.root)
    auth = {"Authorization": f"Bearer {narrowed}"}
    with httpx.Client(base_url=runtime.url, timeout=30) as c:
        r = c.post(f"/v1/projects/{own}/endpoints/inner/call", json={"args": [4]}, headers=auth)
        assert r.status_code == 200 and r.json()["result"] == 8, r.text
        for method, path in [
            ("POST", f"/v1/projects/{theirs}/endpoints/secret_thing/call"),
            ("POST", f"/v1/endpoints/secret_thing/call?project={theirs}"),
            ("DELETE", f"/v1/projects/{theirs}"),
            ("GET", "/v1/endpoints"),
            ("GET", "/v1/logs"),
            ("POST", "/v1/generations"),
        ]:
            r = c.request(method, path, json={"args": []}, headers=auth)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert "project" in r.json()["error"]["message"]
        # a credential for another key made from ours, or one with its MAC changed: no token
        mac = narrowed.rpartition(":")[2]
        for forged in (
            f"slp-project:{theirs}:{mac}",
            narrowed[:-1] + ("0" if mac[-1] != "0" else "1"),
        ):
            r = c.post(
                f"/v1/projects/{theirs}/endpoints/secret_thing/call",
                json={"args": []},
                headers={"Authorization": f"Bearer {forged}"},
            )
            assert r.status_code == 401, (forged, r.status_code)
        # the runtime's own token still reaches everything
        r = c.post(
            f"/v1/projects/{theirs}/endpoints/secret_thing/call",
            json={"args": []},
            headers={"Authorization": f"Bearer {runtime.token}"},
        )
        assert r.status_code == 200, r.text

    # the binary data channel: the narrowed credential calls its own project only
    from slipstream.errors import SlipstreamError
    from slipstream.sdk.client import RuntimeClient

    mine = RuntimeClient(runtime.url, narrowed, project=own)
    assert mine.call("inner", None, (5,), {}, project=own).value == 10
    with pytest.raises(SlipstreamError, match="token"):
        mine.call("secret_thing", None, (), {}, project=theirs)


def test_the_served_store_is_private(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rt = start_runtime("--store", str(store))
    try:
        assert stat.S_IMODE(store.stat().st_mode) == 0o700
    finally:
        rt.stop()
