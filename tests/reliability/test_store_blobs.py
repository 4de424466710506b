"""The store's size on disk stays bounded: blobs no kept generation uses are removed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from slipstream.server.store import Store


def _put(store: Store, text: str) -> str:
    data = text.encode()
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    return sha


def _wait_gone(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not path.exists()


def test_blobs_of_dropped_generations_are_removed_and_kept_ones_stay(tmp_path: Path):
    root = Store(tmp_path / "store", keep_generations=2, blob_grace_s=0)
    a, b = root.scoped("proj-a"), root.scoped("proj-b")
    shared = _put(root, "SHARED = 1\n")  # used by a generation of each project
    other = b.commit({"app.py": shared, "b.py": _put(root, "B = 1\n")}, [])
    b.activate(other)
    shas = []
    for i in range(4):
        sha = _put(root, f"X = {i}\n")
        shas.append(sha)
        a.activate(a.commit({"app.py": sha, "shared.py": shared}, []))
    # generations 1 and 2 of proj-a were dropped: their own blobs go, on a thread of their own
    for sha in shas[:2]:
        assert _wait_gone(root.blobs / sha), "the blob of a dropped generation is still there"
    for sha in [*shas[2:], shared, *other.files.values()]:
        assert (root.blobs / sha).exists(), "a blob a kept generation uses was removed"


def test_a_fresh_upload_waiting_for_its_commit_is_not_removed(tmp_path: Path):
    store = Store(tmp_path / "store", keep_generations=1, blob_grace_s=600)
    pending = _put(store, "PENDING = 1\n")  # uploaded; its commit is on its way
    old = _put(store, "OLD = 1\n")
    os.utime(store.blobs / old, (time.time() - 3600, time.time() - 3600))
    assert store.collect_blobs() == [old]
    assert (store.blobs / pending).exists()
    # the manifest check of a commit renews an unused blob it is about to use
    os.utime(store.blobs / pending, (time.time() - 3600, time.time() - 3600))
    assert store.missing({"p.py": pending}) == []
    assert store.collect_blobs() == []
    store.activate(store.commit({"p.py": pending}, []))
    assert (store.gens / "g1" / "p.py").exists()
