"""Content-addressed code sync: manifest of hashes, upload what is missing, commit.

`sync_project` is the one function the SDK, `slipstream dev` and the language server call.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..protocol.errors import DeployError, SlipstreamError
from ..protocol.messages import CommitReply, EndpointInfo, stale_text
from .config import find_project_root, import_paths, load_project, project_key

if TYPE_CHECKING:
    from .client import RuntimeClient

__all__ = [
    "SyncResult",
    "build_manifest",
    "scan_stamp",
    "sync_project",
    "find_project_root",
    "IGNORED_DIRS",
    "is_ignored",
]

IGNORED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    ".env",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".idea",
    ".vscode",
    "build",
    "dist",
    ".eggs",
    "out",
    ".ipynb_checkpoints",
    "test-results",
}
IGNORED_SUFFIXES = (
    ".pyc",
    ".pyo",
    ".swp",
    ".swo",
    ".swx",
    "~",
    ".tmp",
    ".part",
    ".crdownload",
    ".DS_Store",
)
SYNCED_SUFFIXES = (
    ".py",
    ".toml",
    ".json",
    ".yaml",
    ".yml",
    ".txt",
    ".cfg",
    ".ini",
    ".jinja",
    ".j2",
    ".csv",
    ".md",
)
MAX_FILE_BYTES = 16 * 1024 * 1024
_ENDPOINT_RE = re.compile(rb"^\s*@\s*[\w.]*endpoint\b", re.M)


def is_ignored(rel: str, include: Sequence[str] = ()) -> bool:
    """Whether rel is left out of the sync: an ignored folder or editor file, or a suffix that
    is not code or config unless slipstream.toml's [sync] include names it (`*.html`, `data/*.jsonl`)."""
    parts = rel.split("/")
    if any(p in IGNORED_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return True
    name = parts[-1]
    if name.startswith((".#", "#")) or name.endswith(IGNORED_SUFFIXES):
        return True
    return not name.endswith(SYNCED_SUFFIXES) and not any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in include
    )


@dataclass
class SyncResult:
    generation: str
    changed: list[str]
    uploaded: int
    duration_ms: float
    endpoints: list[EndpointInfo] = field(default_factory=list)
    unchanged: bool = False
    reexecuted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    restart: str = ""  # why workers were replaced instead of reloaded in place ("" = in place)
    installs: list[dict[str, Any]] = field(default_factory=list)  # dependency environments used
    project: str = ""  # the key the runtime keeps this project under (config.project_key)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)  # CommitReply.kept
    # the calls running when it went live, each endpoint's finishing on its older generation:
    # [{"endpoint": "hello", "calls": 3, "generation": "g6"}]
    in_flight: list[dict[str, Any]] = field(default_factory=list)

    def kept_lines(self) -> tuple[str, list[str]]:
        """(what the reload line adds about kept objects, one warning line per stale one)."""
        updated = sum(k.get("updated", 0) for k in self.kept.values())
        classes = sorted(
            {c.rsplit(".", 1)[-1] for k in self.kept.values() for c in k.get("classes", [])}
        )
        note = f"; kept objects follow {', '.join(classes)}" if updated else ""
        warnings = [
            f"⚠ {name}: {stale_text(s)}. Rebuild it: `slipstream rebuild {name}` (or keep(..., version=...))"
            for name, k in self.kept.items()
            for s in k.get("stale", [])
        ]
        return note, warnings

    def in_flight_note(self) -> str:
        """What happens to the calls running across this deploy, said in a few words:
        "3 running calls of hello finish on g6" ("" when none ran)."""
        return "; ".join(
            f"{n} running call{'s' if n != 1 else ''} of {r.get('endpoint')} "
            f"finish{'' if n != 1 else 'es'} on {r.get('generation')}"
            for r in self.in_flight
            for n in [int(r.get("calls", 0))]
        )


_hash_cache: dict[str, tuple[int, int, str]] = {}


def _hash(path: Path) -> str:
    st = path.stat()
    key = str(path)
    hit = _hash_cache.get(key)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _hash_cache[key] = (st.st_mtime_ns, st.st_size, digest)
    return digest


def _project_files(root: Path, cfg: Any) -> Iterator[tuple[str, Path]]:
    """(relpath, path) of each file a sync considers, in a stable order: not in an ignored
    folder, code or config (or [sync] include), not [sync] exclude."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in IGNORED_DIRS and not d.endswith(".egg-info") and not d.startswith(".")
        )
        for fn in sorted(filenames):
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            if is_ignored(rel, cfg.include) or any(
                fnmatch.fnmatch(rel, pat) for pat in cfg.exclude
            ):
                continue
            yield rel, full


def build_manifest(root: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(files: relpath -> sha256, entries: files defining endpoints, skipped: why-not lines)."""
    root = Path(root).resolve()
    cfg = load_project(root)
    files: dict[str, str] = {}
    entries: list[str] = []
    skipped: list[str] = []
    for rel, full in _project_files(root, cfg):
        if full.is_symlink():
            skipped.append(f"{rel}: symlink (not synced)")
            continue
        try:
            size = full.stat().st_size
            if size > MAX_FILE_BYTES:
                skipped.append(f"{rel}: {size} bytes is too large to sync as code")
                continue
            files[rel] = _hash(full)
            if rel.endswith(".py") and _ENDPOINT_RE.search(full.read_bytes()):
                entries.append(rel)
        except OSError as exc:
            skipped.append(f"{rel}: {exc}")
    return files, entries, skipped


def scan_stamp(root: Path) -> int:
    """A cheap fingerprint of what a sync of `root` would send: the name, mtime and size of each
    file it considers (one stat each, nothing read). Equal stamps: no file
    was saved, added or removed since (the SDK's session re-syncs only when it changes)."""
    root = Path(root).resolve()
    try:
        cfg = load_project(root)
    except ValueError:  # a broken slipstream.toml: the sync will say so
        return hash(("broken-config", time.monotonic()))
    seen: list[tuple[str, int, int]] = []
    for rel, full in _project_files(root, cfg):
        try:
            st = full.stat()
        except OSError:
            continue
        seen.append((rel, st.st_mtime_ns, st.st_size))
    return hash(tuple(seen))


# installer lines worth showing while a commit runs (the rest goes to the runtime's log)
_INSTALL_NEWS = (
    "Collecting",
    "Downloading",
    "Installing collected",
    "Successfully installed",
    "ERROR",
    "error:",
)


def _commit_with_progress(
    client: RuntimeClient,
    files: dict[str, str],
    entries: list[str],
    progress: Callable[[str], None],
    project: str | None = None,
    paths: list[str] | None = None,
    **kw: Any,
) -> CommitReply:
    """Commit; if it is still running after a moment, relay the runtime's install/system lines."""
    started = time.time()
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(client.commit, files, entries, project, paths, **kw)
        try:
            return fut.result(timeout=0.5)
        except FuturesTimeout:
            pass
        except SlipstreamError as exc:  # the commit thread's frames (concurrent.futures) are noise
            raise exc.with_traceback(None) from None
        stop = threading.Event()

        def tail() -> None:
            try:
                for e in client.logs(backlog=200, stop=stop):
                    text = str(e.get("text", "")).rstrip()
                    if e.get("ts", 0) < started - 1:
                        continue
                    stream = e.get("stream")
                    if (stream == "system" and text.startswith("install")) or (
                        stream == "install" and text.startswith(_INSTALL_NEWS)
                    ):
                        progress(text)
            except Exception:  # noqa: BLE001 - progress is best effort; the commit decides
                pass

        t = threading.Thread(target=tail, name="sync-progress", daemon=True)
        t.start()
        try:
            return fut.result()
        except SlipstreamError as exc:  # the commit thread's frames (concurrent.futures) are noise
            raise exc.with_traceback(None) from None
        finally:
            stop.set()


def _unsynced_file_hint(exc: DeployError, root: Path) -> str:
    """The import failed on a file that is in the project but was not synced (its suffix is not
    code or config): say so, and how to sync it."""
    m = (
        re.search(r"/\.live-\d+/([^'\"]+)", exc.message)
        if exc.type == "FileNotFoundError"
        else None
    )
    if m is None:
        return ""
    rel = m.group(1)
    try:
        include = load_project(Path(root).resolve()).include
    except ValueError:
        include = []
    if not (Path(root) / rel).is_file() or not is_ignored(rel, include):
        return ""
    pattern = f"*{Path(rel).suffix}" if Path(rel).suffix else rel
    return (
        f". {rel} is in the project but not synced: only code and config files are ({', '.join(SYNCED_SUFFIXES)}); "
        f'add [sync] include = ["{pattern}"] to slipstream.toml'
    )


class _ChangedWhileSyncing(Exception):
    pass


def _upload(
    client: RuntimeClient, missing: list[str], read: Callable[[str], bytes], batched: bool = True
) -> None:
    """Send the missing files: in up to UPLOAD_CONNECTIONS batches at once (each request's
    round trip overlaps the others'), or one PUT per file to an older runtime."""
    if not missing:
        return
    if not batched:
        if len(missing) == 1:
            client.put_blob(missing[0], read(missing[0]))
            return
        with ThreadPoolExecutor(min(8, len(missing))) as ex:
            list(ex.map(lambda sha: client.put_blob(sha, read(sha)), sorted(missing)))
        return
    items = sorted(((sha, read(sha)) for sha in missing), key=lambda it: -len(it[1]))
    total = sum(len(d) for _, d in items)
    # one request for a small upload; a large one split over parallel connections (each new
    # connection costs a round trip, overlapped with the others), no batch over BATCH_BYTES
    k = max(min(UPLOAD_CONNECTIONS, -(-total // SPLIT_BYTES)), -(-total // BATCH_BYTES), 1)
    batches: list[list[tuple[str, bytes]]] = [[] for _ in range(k)]
    sizes = [0] * k
    for item in items:  # largest first into the lightest batch
        i = sizes.index(min(sizes))
        batches[i].append(item)
        sizes[i] += len(item[1])
    batches = [b for b in batches if b]
    if len(batches) == 1:
        client.put_blobs(batches[0])
        return
    with ThreadPoolExecutor(min(UPLOAD_CONNECTIONS, len(batches))) as ex:
        list(ex.map(client.put_blobs, batches))


def sync_project(
    client: RuntimeClient,
    root: str | os.PathLike[str],
    *,
    attempts: int = 3,
    progress: Callable[[str], None] | None = None,
    paths: list[str] | None = None,
) -> SyncResult:
    """Make the runtime run this project's current files. Raises DeployError when refused.

    progress(line) receives what the runtime reports while a slow commit runs (dependency
    installs, their installer's output), so the caller can show it. paths: the folders (relative
    to root) the project's modules are imported from; default config.import_paths(root)."""
    for attempt in range(attempts):
        try:
            return _sync_once(client, root, progress, paths)
        except DeployError as exc:
            hint = _unsynced_file_hint(exc, Path(root))
            if not hint:
                raise
            raise DeployError(
                exc.message + hint,
                type=exc.type,
                file=exc.file,
                line=exc.line,
                traceback=exc.traceback,
            ) from None
        except _ChangedWhileSyncing:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)  # a file was being rewritten (an editor save): take a fresh look
    raise AssertionError("unreachable")


INLINE_BYTES = 1 << 20  # new files up to this much in all go along with the commit: one request
INLINE_FILES = 64
BATCH_BYTES = 64 << 20  # uploads go in batches (POST /v1/blobs), up to UPLOAD_CONNECTIONS at once
SPLIT_BYTES = 4 << 20  # below this, one batch
UPLOAD_CONNECTIONS = 4


def _sync_once(
    client: RuntimeClient,
    root: str | os.PathLike[str],
    progress: Callable[[str], None] | None,
    paths: list[str] | None = None,
) -> SyncResult:
    """One round trip when the runtime has every file but a few small new ones (an edit): the
    commit carries them. Otherwise the commit answers which files are missing, they go up in a
    few batches in parallel, and the commit is sent again: three round trips for a first sync,
    however many files. A runtime without these (older) gets manifest, uploads and commit."""
    from ..protocol.errors import MissingBlobs

    started = time.perf_counter()
    root = find_project_root(root) if Path(root).is_file() else Path(root).resolve()
    paths = import_paths(root) if paths is None else paths
    files, entries, skipped = build_manifest(root)
    by_sha = {sha: rel for rel, sha in files.items()}
    key = project_key(root)  # the one place a sync names its project: SDK, dev and editor alike
    known: set[str] = getattr(client, "known_blobs", set())

    def read(sha: str) -> bytes:
        data = (root / by_sha[sha]).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            _hash_cache.pop(str(root / by_sha[sha]), None)
            raise _ChangedWhileSyncing(by_sha[sha])
        return data

    def commit(blobs: dict[str, bytes] | None, report_missing: bool = True) -> CommitReply:
        kw: dict[str, Any] = {"blobs": blobs, "report_missing": report_missing}
        if progress:
            return _commit_with_progress(client, files, entries, progress, key, paths, **kw)
        return client.commit(files, entries, key, paths, **kw)

    unknown = sorted({sha for sha in files.values() if sha not in known})
    inline: dict[str, bytes] = {}
    if unknown and len(unknown) <= INLINE_FILES:
        sizes = [(root / by_sha[sha]).stat().st_size for sha in unknown]
        if sum(sizes) <= INLINE_BYTES:
            inline = {sha: read(sha) for sha in unknown}
    uploaded = len(inline)
    warm = None
    if not inline and len(unknown) > INLINE_FILES and hasattr(client, "health"):
        # a large first sync: its uploads will want parallel connections; open them while the
        # commit asks what is missing, so their handshakes cost no round trip of their own
        if sum((root / by_sha[sha]).stat().st_size for sha in unknown) > SPLIT_BYTES:
            warm = ThreadPoolExecutor(UPLOAD_CONNECTIONS - 1)
            for _ in range(UPLOAD_CONNECTIONS - 1):
                warm.submit(client.health)
    try:
        try:
            reply = commit(inline)
        except MissingBlobs as exc:
            missing = [sha for sha in exc.missing if sha in by_sha]
            if warm is not None:
                warm.shutdown(wait=True)  # the connections are in the client's pool now
            _upload(client, missing, read)
            uploaded += len(missing)
            reply = commit(None)
    except DeployError as exc:
        if exc.type != "UploadRefused" or "not uploaded" not in exc.message:
            raise
        missing = list(client.missing(files))  # an older runtime: manifest, uploads, commit
        _upload(client, missing, read, batched=False)
        uploaded = len(missing)
        reply = commit(None, report_missing=False)
    finally:
        if warm is not None:
            warm.shutdown(wait=False)
    known |= set(files.values())
    for inst in reply.get("installs", []):
        if inst.get("reused") and progress is not None:  # the embedded runtime's cache: no install
            progress(
                f"dependencies {' '.join(inst.get('requirements', []))}: reusing their environment "
                f"(installed once on this machine: {Path(inst.get('python', '')).parent.parent})"
            )
    return SyncResult(
        generation=reply["generation"],
        changed=reply.get("changed", []),
        uploaded=uploaded,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        endpoints=reply.get("endpoints", []),
        unchanged=reply.get("unchanged", False),
        reexecuted=reply.get("reexecuted", []),
        skipped=skipped,
        restart=reply.get("restart", ""),
        installs=reply.get("installs", []),
        project=reply.get("project", key),
        kept=reply.get("kept") or {},
        in_flight=reply.get("in_flight", []),
    )
