"""Uploads: bad paths, sizes, hashes and manifests are refused with 4xx; the code keeps serving."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from slipstream.sdk.sync import build_manifest
from tests.conftest import remove_project, start_runtime, write_project
from tests.reliability.helpers import (
    ECHO_APP,
    HANG_BOUND_S,
    assert_still_serving,
    auth,
    count_uploads,
    deploy,
    error_message,
    generation,
)

MB = 1024 * 1024
SHA = hashlib.sha256(b"print('hi')\n").hexdigest()

BAD_PATHS = {
    "absolute": "/etc/passwd",
    "absolute-nested": "/tmp/../etc/cron.d/x.py",
    "dotdot": "../outside.py",
    "dotdot-nested": "pkg/../../outside.py",
    "dotdot-only": "..",
    "dot": "./app.py",
    "dot-middle": "pkg/./app.py",
    "empty-part": "pkg//app.py",
    "trailing-slash": "pkg/",
    "backslash": "pkg\\..\\..\\outside.py",
    "backslash-absolute": "\\\\server\\share\\x.py",
    "windows-drive": "C:/Windows/x.py",
    "nul": "app.py\x00.txt",
    "newline": "app\n.py",
    "empty": "",
    "too-long": "a/" * 300 + "x.py",
    "name-too-long": "a" * 300 + ".py",
}

BAD_MANIFESTS = {
    "files-is-list": {"files": ["app.py"]},
    "files-is-string": {"files": "app.py"},
    "files-missing": {},
    "sha-is-int": {"files": {"app.py": 5}},
    "sha-is-null": {"files": {"app.py": None}},
    "sha-not-hex": {"files": {"app.py": "z" * 64}},
    "sha-uppercase": {"files": {"app.py": SHA.upper()}},
    "sha-short": {"files": {"app.py": SHA[:40]}},
    "entries-is-string": {"files": {"app.py": SHA}, "entries": "app.py"},
    "entries-has-int": {"files": {"app.py": SHA}, "entries": [1]},
    "body-is-list": [["app.py", SHA]],
    "body-is-null": None,
}


# Content the runtime already holds, so an unsafe path cannot be refused as "not uploaded"
ESCAPEE = b"ESCAPED = True  # written by test_unsafe_paths_are_refused_and_the_code_keeps_serving\n"
ESCAPEE_SHA = hashlib.sha256(ESCAPEE).hexdigest()


@pytest.fixture(scope="module")
def store_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime keeps its store two folders down, so `../..` lands where the test can look."""
    return tmp_path_factory.mktemp("outer")


@pytest.fixture(scope="module")
def rt(store_parent: Path):
    runtime = start_runtime(
        "--gpu-fallback",
        "--max-file-mb",
        "1",
        "--max-project-mb",
        "2",
        "--store",
        str(store_parent / "store"),
    )
    deploy(runtime, {"app.py": ECHO_APP})
    yield runtime
    runtime.stop()


def _post(rt, path: str, body=None, content: bytes | None = None, ctype: str = "application/json"):
    if content is None:
        return httpx.post(rt.url + path, json=body, headers=auth(rt), timeout=HANG_BOUND_S)
    return httpx.post(
        rt.url + path,
        content=content,
        headers={**auth(rt), "content-type": ctype},
        timeout=HANG_BOUND_S,
    )


def _put_blob(rt, sha: str, data, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.put(
        f"{rt.url}/v1/blobs/{sha}",
        content=data,
        headers={**auth(rt), "content-type": "application/octet-stream", **(headers or {})},
        timeout=HANG_BOUND_S,
    )


def _refused(r: httpx.Response, *statuses: int) -> str:
    assert r.status_code in (statuses or range(400, 500)), (r.status_code, r.text[:300])
    msg = error_message(r)
    assert msg, f"a refusal says why: {r.text[:300]}"
    return msg


@pytest.mark.parametrize("route", ["/v1/sync/manifest", "/v1/generations"])
@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_unsafe_paths_are_refused_and_the_code_keeps_serving(rt, store_parent, route, case):
    before = generation(rt)
    assert _put_blob(rt, ESCAPEE_SHA, ESCAPEE).status_code == 200  # stored: only the path is wrong
    path = BAD_PATHS[case]
    r = _post(rt, route, {"files": {path: ESCAPEE_SHA}, "entries": [path]})
    msg = _refused(r, 400)
    assert "path" in msg and "not uploaded" not in msg, (
        f"refused for its path, not its content: {msg}"
    )
    stray = [
        p
        for p in store_parent.rglob("*")
        if p.is_file()
        and "blobs" not in p.relative_to(store_parent).parts
        and p.read_bytes() == ESCAPEE
    ]
    assert not stray, f"{case}: the runtime wrote {stray}"
    assert_still_serving(rt, before)


@pytest.mark.parametrize(
    "route,case",
    [
        (route, case)
        for case in sorted(BAD_MANIFESTS)
        for route in ("/v1/sync/manifest", "/v1/generations")
        if not (
            case.startswith("entries") and route == "/v1/sync/manifest"
        )  # a query takes no entries
    ],
)
def test_invalid_manifests_are_refused_with_a_message(rt, route, case):
    before = generation(rt)
    _refused(_post(rt, route, BAD_MANIFESTS[case]), 400, 422)
    assert_still_serving(rt, before)


@pytest.mark.parametrize(
    "content,ctype",
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'{"files": {}}', "text/plain"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    ],
)
def test_unparseable_manifests_are_refused(rt, content, ctype):
    before = generation(rt)
    for route in ("/v1/sync/manifest", "/v1/generations"):
        _refused(_post(rt, route, content=content, ctype=ctype), 400, 415, 422)
    assert_still_serving(rt, before)


def test_too_many_files_are_refused(rt):
    before = generation(rt)
    files = {f"pkg/m{i}.py": SHA for i in range(20_001)}
    for route in ("/v1/sync/manifest", "/v1/generations"):
        msg = _refused(_post(rt, route, {"files": files}), 400)
        assert "20001 files" in msg and "exclude" in msg
    assert_still_serving(rt, before)


def test_a_file_and_a_folder_of_the_same_name_are_refused(rt):
    """`a.py` as a file and as a folder cannot both exist: refused, not a 500."""
    before = generation(rt)
    data = b"X = 1\n"
    sha = hashlib.sha256(data).hexdigest()
    assert _put_blob(rt, sha, data).status_code == 200
    _refused(_post(rt, "/v1/generations", {"files": {"a.py": sha, "a.py/b.py": sha}}), 400)
    assert_still_serving(rt, before)


def test_blobs_whose_bytes_do_not_match_their_sha_are_refused(rt):
    before = generation(rt)
    msg = _refused(_put_blob(rt, SHA, b"print('tampered')\n"), 400)
    assert "SHA-256" in msg
    _refused(_put_blob(rt, SHA.upper(), b"print('hi')\n"), 404, 422)
    _refused(_put_blob(rt, "../" + SHA[3:], b"x"), 404, 422)
    for probe in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", SHA.upper(), SHA):
        r = httpx.get(f"{rt.url}/v1/blobs/{probe}", headers=auth(rt), timeout=HANG_BOUND_S)
        _refused(r, 404, 422)  # SHA itself: its bytes were refused, so there is nothing to read
    missing = httpx.post(
        f"{rt.url}/v1/sync/manifest",
        json={"files": {"x.py": SHA}},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    ).json()["missing"]
    assert SHA in missing, "the refused bytes were not stored"
    assert_still_serving(rt, before)


def test_oversized_files_are_refused_declared_or_streamed(rt):
    before = generation(rt)
    big = os.urandom(MB + 1)
    sha = hashlib.sha256(big).hexdigest()
    msg = _refused(_put_blob(rt, sha, big), 413)
    assert str(MB) in msg

    def chunks():  # no content-length: the server must count as it reads
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    _refused(_put_blob(rt, sha, chunks()), 413)
    missing = _post(rt, "/v1/sync/manifest", {"files": {"big.txt": sha}}).json()["missing"]
    assert missing == [sha], "nothing of the oversized file was kept"
    assert_still_serving(rt, before)


def test_oversized_projects_are_refused_at_commit(rt):
    before = generation(rt)
    files = {}
    for i in range(3):  # three files under the 1 MB file limit, over the 2 MB project limit
        data = os.urandom(MB - 1000)
        sha = hashlib.sha256(data).hexdigest()
        assert _put_blob(rt, sha, data).status_code == 200
        files[f"data{i}.txt"] = sha
    app = ECHO_APP.encode()
    app_sha = hashlib.sha256(app).hexdigest()
    assert _put_blob(rt, app_sha, app).status_code == 200
    files["app.py"] = app_sha
    msg = _refused(_post(rt, "/v1/generations", {"files": files, "entries": ["app.py"]}), 400)
    assert "limit" in msg
    assert_still_serving(rt, before)


def test_committing_files_never_uploaded_is_refused(rt):
    before = generation(rt)
    ghost = hashlib.sha256(b"never uploaded").hexdigest()
    msg = _refused(_post(rt, "/v1/generations", {"files": {"ghost.py": ghost}}), 400)
    assert "not uploaded" in msg
    assert_still_serving(rt, before)


def test_symlinks_are_followed_and_their_loops_stopped(rt, tmp_path: Path):
    """A link's content syncs under the link's path (a file or a folder, inside or outside the
    project); a loop or a broken link is skipped and listed, never walked forever."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shared.txt").write_text("shared\n")
    (outside / "secret_pkg.py").write_text("SECRET = 1\n")
    root = write_project(tmp_path / "proj", {"app.py": ECHO_APP, "pkg/inside.py": "X = 1\n"})
    (root / "shared.txt").symlink_to(outside / "shared.txt")
    (root / "pkg" / "linked.py").symlink_to(outside / "secret_pkg.py")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    (root / "pkg" / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.py").symlink_to(tmp_path / "gone.py")

    files, _, skipped = build_manifest(root)
    assert sorted(files) == [
        "app.py",
        "linked_dir/secret_pkg.py",
        "linked_dir/shared.txt",
        "pkg/inside.py",
        "pkg/linked.py",
        "shared.txt",
        "slipstream.toml",
    ]
    assert f"pkg/loop/: a symlink loop (-> {root})" in skipped
    assert f"dangling.py: a broken symlink (-> {tmp_path / 'gone.py'})" in skipped

    res = deploy(rt, {}, root=root)
    r = httpx.post(  # a project of its own beside the module's: name it
        f"{rt.url}/v1/projects/{res.project}/endpoints/tree/call",
        json={},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    )
    assert r.json()["result"] == sorted(files)
    assert_still_serving(rt, res.generation, res.project)
    remove_project(rt, root)  # its echo endpoint would make the runtime's test project's ambiguous


@pytest.mark.parametrize("big", ["project", "file"])
def test_an_oversized_project_is_refused_before_anything_is_uploaded(
    rt, tmp_path: Path, monkeypatch, big
):
    """The SDK sends each file's size with its first commit: a project over the runtime's
    limits (2 MB here, 1 MB a file) is refused before a byte of it goes up, naming its biggest
    files and the setting that raises the limit."""
    from slipstream.protocol.errors import DeployError

    data = (
        {f"data/part{i}.txt": os.urandom(450_000).hex() for i in range(3)}  # 0.9 MB each
        if big == "project"
        else {"data/huge.txt": os.urandom(750_000).hex()}  # 1.5 MB
    )
    root = write_project(tmp_path / "big", {"app.py": ECHO_APP, **data})
    sent = count_uploads(monkeypatch)
    client = rt.client()
    try:
        with pytest.raises(DeployError) as err:
            client.sync(root)
    finally:
        client.close()
    assert sent == [], f"{sum(sent)} bytes went up before the refusal"
    msg = str(err.value)
    assert "nothing was uploaded" in msg, msg
    if big == "project":
        assert "over the runtime's 2 MB limit" in msg and "data/part0.txt (0.9 MB)" in msg, msg
        assert "slipstream serve --max-project-mb" in msg and "[sync] exclude" in msg, msg
    else:
        assert "data/huge.txt is 1.5 MB, over the runtime's 1 MB per-file limit" in msg, msg
        assert "slipstream serve --max-file-mb" in msg, msg
    shas = {rel: hashlib.sha256(t.encode()).hexdigest() for rel, t in data.items()}
    missing = _post(rt, "/v1/sync/manifest", {"files": shas}).json()["missing"]
    assert sorted(missing) == sorted(shas.values()), "the runtime holds none of it"


def test_an_oversized_manifest_is_refused_before_it_is_parsed(rt):
    import httpx

    from slipstream.server.app import MAX_JSON_BODY

    body = b'{"files": {"' + b"a" * (MAX_JSON_BODY + 10) + b'": "x"}}'
    r = httpx.post(
        f"{rt.url}/v1/sync/manifest",
        content=body,
        headers={"Authorization": f"Bearer {rt.token}", "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "exclude" in r.json()["error"]["message"]


def test_an_oversized_manifest_without_a_length_is_refused_too(rt):
    import httpx

    from slipstream.server.app import MAX_JSON_BODY

    def chunks():
        yield b'{"files": {"'
        for _ in range(MAX_JSON_BODY // (1 << 20) + 2):
            yield b"a" * (1 << 20)
        yield b'": "x"}}'

    r = httpx.post(
        f"{rt.url}/v1/generations",
        content=chunks(),
        headers={"Authorization": f"Bearer {rt.token}", "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413
