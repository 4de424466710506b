"""Code generations for workers that do not share the runtime's disk (Ray actors on other nodes).

The worker asks the runtime for the blobs it lacks (``GET /v1/blobs/{sha}``, bearer token),
keeps them in a per-machine cache shared by its workers, and lays out the generation as a
directory of hard links in a folder of its own, the same layout the runtime's store uses
(``<root>/<gen id>/<relpath>``), so tracebacks and reloads behave as they do on the runtime.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from ..protocol import envvars
from ..protocol.paths import validate_path, validate_sha

__all__ = ["FetchError", "cache_root", "materialise", "worker_dir"]

KEEP_GENERATIONS = 4
_PARALLEL = 8
_fresh: set[Path] = set()  # worker folders this process has already cleared


class FetchError(RuntimeError):
    """The worker could not get the code from the runtime; says what to check."""


def cache_root() -> Path:
    """This machine's cache: $SLIPSTREAM_CACHE, else <tmp>/slipstream-cache-<uid>."""
    env = os.environ.get(envvars.CACHE)
    root = Path(env) if env else Path(tempfile.gettempdir()) / f"slipstream-cache-{os.getuid()}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    return root


def worker_dir(pid: int | None = None) -> Path:
    """The folder holding one worker process's generation directories."""
    return cache_root() / "workers" / str(pid or os.getpid())


class _Downloader:
    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"cannot fetch code from {url!r}: not an http(s) URL")
        self.url, self.parts, self.token = url, parts, token
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.parts.scheme == "https"
                else http.client.HTTPConnection
            )
            assert self.parts.hostname, self.url  # checked in __init__
            conn = cls(self.parts.hostname, self.parts.port, timeout=60)
            self._local.conn = conn
        return conn

    def get(self, sha: str, dest: Path) -> None:
        path = f"{self.parts.path.rstrip('/')}/v1/blobs/{sha}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for attempt in range(2):  # one retry: a kept-alive connection may have been closed
            conn = self._conn()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise FetchError(
                        f"could not fetch code from the runtime at {self.url} ({exc}); "
                        "the Ray nodes must reach the runtime's HTTP address: start "
                        "`slipstream serve --host 0.0.0.0` on a machine the nodes can reach"
                    ) from None
        if resp.status != 200:
            raise FetchError(
                f"the runtime at {self.url} answered {resp.status} for blob {sha[:12]}: "
                f"{data[:200]!r}"
            )
        if hashlib.sha256(data).hexdigest() != sha:
            raise FetchError(f"blob {sha[:12]} from {self.url} does not match its SHA-256")
        tmp = dest.with_name(f"{sha}.tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, dest)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def materialise(gen: str, manifest: dict[str, str], url: str, token: str) -> str:
    """Return a local directory holding generation ``gen``, downloading the blobs it lacks."""
    if not gen or "/" in gen or gen in (".", ".."):
        raise FetchError(f"bad generation id {gen!r}")
    root = cache_root()
    blobs = root / "blobs"
    missing = sorted({validate_sha(sha) for sha in manifest.values() if not (blobs / sha).exists()})
    if missing:
        dl = _Downloader(url, token)
        try:
            if len(missing) == 1:
                dl.get(missing[0], blobs / missing[0])
            else:
                with ThreadPoolExecutor(min(_PARALLEL, len(missing)), "fetch") as ex:
                    list(ex.map(lambda sha: dl.get(sha, blobs / sha), missing))
        finally:
            dl.close()
    mine = worker_dir()
    if mine not in _fresh:  # folders of processes that are gone (this pid's included) are stale
        _prune_dead(mine.parent)
        shutil.rmtree(mine, ignore_errors=True)
        _fresh.add(mine)
    target = mine / gen
    if target.is_dir():
        return str(target)
    mine.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{gen}-", dir=mine))
    for rel, sha in manifest.items():
        dst = tmp / validate_path(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blobs / sha, dst)
        except OSError:
            shutil.copyfile(blobs / sha, dst)
    os.replace(tmp, target)
    _prune(mine, keep=target)
    return str(target)


def _prune(mine: Path, keep: Path) -> None:
    gens = sorted(
        (p for p in mine.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in [p for p in gens if p != keep][: max(len(gens) - KEEP_GENERATIONS, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def _prune_dead(workers: Path) -> None:
    for d in workers.iterdir() if workers.is_dir() else ():
        if not d.name.isdigit():
            continue
        try:
            os.kill(int(d.name), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (PermissionError, OverflowError):
            pass
