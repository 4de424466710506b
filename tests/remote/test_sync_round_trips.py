"""Round trips of the save path, counted at a TCP proxy between the SDK and the runtime (the
benchmark's DelayProxy, with no delay): an edit deploys in one request, a first sync of many
files in a few whatever their number, and a client that believes the runtime has files it lost
still syncs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningRuntime, remove_project, write_project

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_remote_latency import PROXY_HOST, DelayProxy  # noqa: E402

APP = "from slipstream import endpoint\n\nVERSION = {v}\n\n@endpoint\ndef version():\n    return VERSION\n"


@pytest.fixture()
def proxied(runtime: RunningRuntime):
    port = int(runtime.url.rsplit(":", 1)[1])
    proxy = DelayProxy((PROXY_HOST, port), ("127.0.0.1", port), 0.0).start()
    yield proxy, f"http://{PROXY_HOST}:{port}"
    proxy.stop()


def test_an_edit_deploys_in_one_round_trip_and_a_first_sync_in_a_few(
    runtime: RunningRuntime, proxied, tmp_path: Path
) -> None:
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.sync import sync_project

    proxy, url = proxied
    files = {"app.py": APP.format(v=1)} | {f"data/f{i:03d}.txt": f"{i}\n" * 20 for i in range(300)}
    root = write_project(tmp_path / "app", files)
    client = RuntimeClient(url, runtime.token)
    try:
        client.health()  # the connection is made
        proxy.reset_counts()
        first = sync_project(client, root)
        # commit (the runtime answers what is missing), the uploads (one batch: one request),
        # commit again; not one request per file
        assert first.uploaded == 302  # and slipstream.toml
        assert (proxy.exchanges, proxy.connections) == (3, 0)

        for v in (2, 3):
            (root / "app.py").write_text(APP.format(v=v))
            proxy.reset_counts()
            res = sync_project(client, root)
            assert res.changed == ["app.py"] and res.uploaded == 1
            assert (proxy.exchanges, proxy.connections) == (1, 0), (
                "an edit is one request on the open connection"
            )
            assert client.call_json("version", project=res.project)["result"] == v

        proxy.reset_counts()
        assert sync_project(client, root).unchanged
        assert proxy.exchanges == 1

        # a save after a pause (the editor idle for a while) still finds its connection open:
        # no connect (and over https no TLS handshake) on top of the request
        time.sleep(
            6
        )  # the pause itself is what is tested (httpx drops idle connections after 5 s by default)
        (root / "app.py").write_text(APP.format(v=4))
        proxy.reset_counts()
        sync_project(client, root)
        assert (proxy.exchanges, proxy.connections) == (1, 0)
    finally:
        client.close()
        remove_project(runtime, root)


def test_a_client_that_believes_the_runtime_has_its_files_still_syncs(
    runtime: RunningRuntime, tmp_path: Path
) -> None:
    """E.g. the runtime restarted with a temporary store: the commit answers which files are
    missing, and they are uploaded."""
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.sync import build_manifest, sync_project

    root = write_project(tmp_path / "lost", {"app.py": APP.format(v=41), "helper.py": "X = 1\n"})
    (root / "slipstream.toml").write_text(
        f'[project]\nname = "lost"\n# {tmp_path}\n'
    )  # bytes no other test has
    client = RuntimeClient(runtime.url, runtime.token)
    try:
        files, _, _ = build_manifest(root)
        client.known_blobs |= set(files.values())
        res = sync_project(client, root)
        assert res.uploaded == len(files)
        assert client.call_json("version", project=res.project)["result"] == 41
    finally:
        client.close()
        remove_project(runtime, root)


def test_a_broken_batch_upload_is_refused_with_what_is_wrong(runtime: RunningRuntime) -> None:
    import hashlib

    auth = {"Authorization": f"Bearer {runtime.token}"}
    data = b"print('hi')\n"
    sha = hashlib.sha256(data).hexdigest()
    good = sha.encode() + len(data).to_bytes(8, "big") + data
    r = httpx.post(f"{runtime.url}/v1/blobs", content=good, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json() == {"stored": 1}
    r = httpx.post(f"{runtime.url}/v1/blobs", content=good[:-3], headers=auth, timeout=30)
    assert r.status_code == 400 and "fewer follow" in r.json()["error"]["message"]
    wrong = ("0" * 64).encode() + len(data).to_bytes(8, "big") + data
    r = httpx.post(f"{runtime.url}/v1/blobs", content=wrong, headers=auth, timeout=30)
    assert r.status_code == 400 and "SHA-256" in r.json()["error"]["message"]
    r = httpx.post(f"{runtime.url}/v1/blobs", content=good, timeout=30)
    assert r.status_code == 401
