"""Content-addressed code sync: manifest of hashes, upload what is missing, commit.

`sync_project` is the one function the SDK, `slipstream dev` and the language server call.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
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
    "Manifest",
    "build_manifest",
    "scan_project",
    "scan_stamp",
    "sync_project",
    "find_project_root",
    "IGNORED_DIRS",
    "is_ignored",
]

# folders skipped by name: version control, caches, editors' and tools' state. None of these
# names can be a package a user writes (a folder named env/, build/, out/ or dist/ syncs; an
# environment is skipped because it is one: pyvenv.cfg or conda-meta/ inside, see _environment)
QUIET_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".idea",
    ".vscode",
    ".eggs",
    ".ipynb_checkpoints",
    "test-results",
}
IGNORED_DIRS = QUIET_DIRS  # the older name
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
    """Whether rel is left out of the sync by its name alone: in a folder skipped by name (version
    control, caches, hidden folders), an editor's temporary file, or a suffix that is not code or
    config unless slipstream.toml's [sync] include names it (`*.html`, `data/*.jsonl`).
    (.gitignore, [sync] exclude, environments and sizes are the walk's: see scan_project.)"""
    parts = rel.split("/")
    if any(_quiet_dir(p) for p in parts[:-1]):
        return True
    name = parts[-1]
    if name.startswith((".#", "#")) or name.endswith(IGNORED_SUFFIXES):
        return True
    return not name.endswith(SYNCED_SUFFIXES) and not _included(rel, include)


def _quiet_dir(name: str) -> bool:
    return name in QUIET_DIRS or name.endswith(".egg-info") or name.startswith(".")


def _included(rel: str, include: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in include)


def _include_may_reach(dir_rel: str, include: Sequence[str]) -> bool:
    """Whether a [sync] include pattern may name a file under dir_rel (then a folder .gitignore
    skips is walked for it: include wins)."""
    dparts = dir_rel.split("/")
    for pat in include:
        if "/" not in pat or "**" in pat:
            return True
        parts = pat.split("/")
        if len(parts) > len(dparts) and all(
            fnmatch.fnmatch(d, q) for d, q in zip(dparts, parts, strict=False)
        ):
            return True
    return False


def _environment(d: Path) -> str:
    """Why folder d is a Python environment ("" when it is not): decided by what is inside it,
    never by its name (an RL project's env/ package syncs)."""
    if (d / "pyvenv.cfg").is_file():
        return "a virtualenv (pyvenv.cfg)"
    if (d / "conda-meta").is_dir():
        return "a conda environment (conda-meta/)"
    return ""


class _GitIgnore:
    """One folder's .gitignore, as git reads it (pathspec's GitIgnoreSpec), with line numbers."""

    def __init__(self, base: str, file: Path) -> None:
        import pathspec

        self.base = base  # the folder it sits in, relative to the root ("" = the root)
        self.label = f"{base}/.gitignore" if base else ".gitignore"
        lines = file.read_text(errors="replace").splitlines()
        self.kept = [
            (i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")
        ]
        self.spec = pathspec.GitIgnoreSpec.from_lines([ln for _, ln in self.kept])
        if len(self.spec.patterns) != len(self.kept):  # a line pathspec drops: no line numbers
            self.kept = []
        # one regular expression for "does any line match": most files match none, and one
        # search is much cheaper than pathspec's check of each line in turn
        self.any: re.Pattern[str] | None = None
        try:
            self.any = re.compile(
                "|".join(
                    "(?:" + str(p.regex.pattern).replace("(?P<ps_d>", "(") + ")"
                    for p in self.spec.patterns
                    if p.include is not None and p.regex is not None
                )
                or "(?!)"
            )
        except (AttributeError, re.error):
            self.any = None

    def check(self, rel: str, is_dir: bool) -> tuple[bool | None, str]:
        """(True: ignored, False: re-included by a `!` line, None: no line matches; the rule)."""
        sub = rel[len(self.base) + 1 :] if self.base else rel
        sub = sub + "/" if is_dir else sub
        if self.any is not None and not self.any.match(sub):
            return None, ""
        res = self.spec.check_file(sub)
        if res.include is None or res.index is None:
            return None, ""
        if self.kept:
            lineno, line = self.kept[res.index]
            return res.include, f"{self.label}:{lineno} {line.strip()!r}"
        return res.include, self.label


def _ignored_by_git(rel: str, is_dir: bool, rules: list[_GitIgnore]) -> str:
    """The .gitignore rule that leaves rel out ("" when none does): the deepest file's last
    matching line wins, as in git."""
    verdict: bool | None = None
    why = ""
    for g in rules:
        v, rule = g.check(rel, is_dir)
        if v is not None:
            verdict, why = v, rule
    return why if verdict else ""


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


@dataclass
class Manifest:
    """What a sync of a project sends: each file's hash and size, the files defining endpoints,
    and each path it leaves out with the rule that did (folders end in "/")."""

    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    quiet: set[str] = field(default_factory=set)  # skips not worth a line (.git/, __pycache__/)

    def skipped_lines(self) -> list[str]:
        """One line per skip the user should hear of ("data/: .gitignore:3 'data/'"); files
        skipped for their suffix, one line per suffix."""
        lines: list[str] = []
        by_suffix: dict[str, list[str]] = {}
        for rel, why in self.skipped.items():
            if rel in self.quiet:
                continue
            if why.startswith(_NOT_CODE):
                by_suffix.setdefault(Path(rel).suffix or rel.rsplit("/", 1)[-1], []).append(rel)
            else:
                lines.append(f"{rel}: {why}")
        for _suffix, rels in sorted(by_suffix.items()):
            shown = ", ".join(rels[:3]) + (f" and {len(rels) - 3} more" if len(rels) > 3 else "")
            lines.append(f"{shown}: {self.skipped[rels[0]]}")
        return lines


_NOT_CODE = "not code or config"


def _walk(
    root: Path, cfg: Any, skipped: dict[str, str], quiet: set[str]
) -> Iterator[tuple[str, Path]]:
    """(relpath, path) of each file a sync sends, in a stable order; what it leaves out goes into
    skipped (relpath -> the rule), the uninteresting ones also into quiet. Symbolic links are
    followed (their content syncs under the link's path); a broken one or a loop is skipped."""
    include = list(cfg.include)

    def skip(rel: str, why: str, is_quiet: bool = False) -> None:
        skipped.setdefault(rel, why)
        if is_quiet:
            quiet.add(rel)

    def excluded(rel: str) -> str:
        pat = next((p for p in cfg.exclude if fnmatch.fnmatch(rel, p)), None)
        return f"[sync] exclude {pat!r} in slipstream.toml" if pat else ""

    def visit(
        d: Path,
        rel_dir: str,
        rules: list[_GitIgnore],
        seen: frozenset[tuple[int, int]],
        git_skipped: bool,
    ) -> Iterator[tuple[str, Path]]:
        try:
            with os.scandir(d) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skip(rel_dir + "/", f"cannot be read ({exc.strerror or exc})")
            return
        if any(e.name == ".gitignore" and e.is_file() for e in found):
            try:
                rules = [*rules, _GitIgnore(rel_dir, d / ".gitignore")]
            except OSError:
                pass
        for e in found:
            name = e.name
            full = Path(e.path)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            link = e.is_symlink()
            try:  # one stat for a folder or a link; a plain file's type comes with its name
                st = (
                    e.stat()
                    if link or e.is_dir(follow_symlinks=False)
                    else e.stat(follow_symlinks=False)
                    if not e.is_file(follow_symlinks=False)
                    else None
                )
            except OSError:
                if link:
                    target = os.readlink(full)
                    loop = _is_loop(full)
                    skip(rel, f"a {'symlink loop' if loop else 'broken symlink'} (-> {target})")
                continue
            if st is None:
                pass  # a regular file
            elif stat.S_ISDIR(st.st_mode):
                if _quiet_dir(name):
                    skip(rel + "/", "a version-control, cache or hidden folder", True)
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    skip(rel + "/", f"a symlink loop (-> {os.readlink(full) if link else name})")
                    continue
                why = _environment(full) or excluded(rel) or excluded(rel + "/")
                if why:
                    skip(rel + "/", why)
                    continue
                git = "" if git_skipped else _ignored_by_git(rel, True, rules)
                if git and not _include_may_reach(rel, include):
                    skip(rel + "/", git)
                    continue
                if git:
                    skip(rel + "/", git)  # walked only for what [sync] include names
                yield from visit(
                    full, rel, rules, seen | {(st.st_dev, st.st_ino)}, git_skipped or bool(git)
                )
                continue
            elif not stat.S_ISREG(st.st_mode):
                continue
            if name.startswith((".#", "#")) or name.endswith(IGNORED_SUFFIXES):
                skip(rel, "an editor's or download's temporary file", True)
                continue
            why = excluded(rel)
            if why:
                skip(rel, why)
                continue
            included = _included(rel, include)
            if not included:
                if git_skipped:
                    continue  # its folder's line says it
                git = _ignored_by_git(rel, False, rules)
                if git:
                    skip(rel, git)
                    continue
                if not name.endswith(SYNCED_SUFFIXES):
                    pattern = f"*{Path(name).suffix}" if Path(name).suffix else rel
                    skip(
                        rel,
                        f'{_NOT_CODE}; add [sync] include = ["{pattern}"] to slipstream.toml to sync it',
                        name.startswith("."),
                    )
                    continue
            yield rel, full

    top = root.stat()
    yield from visit(root, "", [], frozenset({(top.st_dev, top.st_ino)}), False)


def _is_loop(link: Path) -> bool:
    try:
        link.resolve(strict=True)
    except RuntimeError:
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _project_files(root: Path, cfg: Any) -> Iterator[tuple[str, Path]]:
    """(relpath, path) of each file a sync considers, in a stable order."""
    yield from _walk(root, cfg, {}, set())


def scan_project(root: Path) -> Manifest:
    """Hash the files a sync of root sends, and say why each one left out is."""
    root = Path(root).resolve()
    cfg = load_project(root)
    m = Manifest()
    for rel, full in _walk(root, cfg, m.skipped, m.quiet):
        try:
            size = full.stat().st_size
            if size > MAX_FILE_BYTES:
                m.skipped[rel] = (
                    f"{size / 1e6:.1f} MB, over the {MAX_FILE_BYTES >> 20} MB per-file limit of a "
                    "sync (load weights and data at run time: from storage, with keep())"
                )
                continue
            m.files[rel] = _hash(full)
            m.sizes[rel] = size
            if rel.endswith(".py") and _ENDPOINT_RE.search(full.read_bytes()):
                m.entries.append(rel)
        except OSError as exc:
            m.skipped[rel] = f"cannot be read ({exc.strerror or exc})"
    return m


def build_manifest(root: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(files: relpath -> sha256, entries: files defining endpoints, skipped: why-not lines)."""
    m = scan_project(root)
    return m.files, m.entries, m.skipped_lines()


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
    if m is None or "is not on the runtime" in exc.message:  # the runtime said why already
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
SKIPPED_SENT = 5000  # skipped paths a commit tells the runtime of, at most


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
    m = scan_project(root)
    files, entries = m.files, m.entries
    # the runtime keeps why each path was left out, so a call failing on one says (SKIPPED_SENT)
    sent_skips = dict(sorted(m.skipped.items())[:SKIPPED_SENT])
    file_sizes = {rel: m.sizes[rel] for rel in files}
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
        kw: dict[str, Any] = {
            "blobs": blobs,
            "report_missing": report_missing,
            "skipped": sent_skips,
            "sizes": file_sizes,
        }
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
        skipped=m.skipped_lines(),
        restart=reply.get("restart", ""),
        installs=reply.get("installs", []),
        project=reply.get("project", key),
        kept=reply.get("kept") or {},
        in_flight=reply.get("in_flight", []),
    )
