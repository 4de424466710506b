"""Workers that do not share the runtime's disk fetch code blobs over HTTP (GET /v1/blobs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from slipstream.worker import fetch


@pytest.fixture()
def synced(runtime, project_factory):
    proj = project_factory(
        runtime,
        {
            "app.py": "from slipstream import endpoint\n\n@endpoint\ndef f():\n    return 1\n",
            "pkg/data.txt": "hello\n",
        },
        name="blobs",
    )
    proj.sync()
    return proj


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_get_blob_needs_the_token_and_returns_the_bytes(runtime, synced):
    sha = _sha("hello\n")
    url = f"{runtime.url}/v1/blobs/{sha}"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"Authorization": f"Bearer {runtime.token}"})
    assert r.status_code == 200 and r.content == b"hello\n"
    missing = httpx.get(
        f"{runtime.url}/v1/blobs/{'0' * 64}", headers={"Authorization": f"Bearer {runtime.token}"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "UnknownBlob"


def test_materialise_lays_out_a_generation_from_fetched_blobs(
    runtime, synced, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLIPSTREAM_CACHE", str(tmp_path / "cache"))
    manifest = {"pkg/data.txt": _sha("hello\n")}
    d = Path(fetch.materialise("g7", manifest, runtime.url, runtime.token))
    assert d.name == "g7" and (d / "pkg/data.txt").read_text() == "hello\n"
    assert (tmp_path / "cache" / "blobs" / manifest["pkg/data.txt"]).exists(), (
        "kept in the machine's cache"
    )
    assert fetch.materialise("g7", manifest, runtime.url, runtime.token) == str(d), (
        "once per generation"
    )
    with pytest.raises(fetch.FetchError, match="401"):
        fetch.materialise("g8", {"x.py": "1" * 64}, runtime.url, "wrong-token")
    with pytest.raises(ValueError, match="leaves the project"):
        fetch.materialise(
            "g9", {"../evil.py": manifest["pkg/data.txt"]}, runtime.url, runtime.token
        )
