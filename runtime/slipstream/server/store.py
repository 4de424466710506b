"""Content-addressed code store: blobs by SHA-256, generations as directories of them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.paths import Limits, UploadRefused, check_paths, validate_path, validate_sha

__all__ = ["Store", "Limits", "UploadRefused", "validate_path", "Generation"]

_collecting = threading.Lock()  # one blob collection at a time, whichever project's store

CURRENT_FILE = ".current.json"  # in a project's generations folder: its live generation's manifest


@dataclass
class Generation:
    id: str
    dir: Path
    files: dict[str, str]
    entries: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=lambda: [""])  # folders on sys.path ("" = the root)
    # what the sync left out -> the rule that did; workers add it to errors on those paths
    skipped: dict[str, str] = field(default_factory=dict)


class Store:
    def __init__(
        self,
        root: Path,
        limits: Limits = Limits(),
        keep_generations: int = 6,
        gens: Path | None = None,
        blob_grace_s: float = 600.0,
    ) -> None:
        self.root = Path(root).absolute()  # workers link to generation dirs by absolute path
        self.blobs = self.root / "blobs"
        self.gens = Path(gens).absolute() if gens is not None else self.root / "gens"
        # private to the runtime's user: the projects' code (other local users read nothing)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(0o700)  # a store made by an older runtime, or a folder given to it
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.gens.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.keep_generations = keep_generations
        # an unused blob younger than this stays: it may be an upload whose commit is on its way
        self.blob_grace_s = blob_grace_s
        # a persistent store outlives the process: new generations never reuse an old one's id
        self._counter = max(
            (int(d.name[1:]) for d in self.gens.glob("g*") if d.name[1:].isdigit()), default=0
        )
        self._lock = threading.Lock()
        self.current: Generation | None = None
        self.history: list[Generation] = []

    def scoped(self, key: str) -> Store:
        """One project's view: the shared blobs (content-addressed, so no project can change
        another's bytes), its own generations under gens/<key>/ with their own history."""
        return Store(
            self.root,
            self.limits,
            self.keep_generations,
            gens=self.root / "gens" / key,
            blob_grace_s=self.blob_grace_s,
        )

    def check_manifest(self, files: dict[str, str]) -> dict[str, str]:
        if not isinstance(files, dict):
            raise UploadRefused("manifest 'files' must map paths to SHA-256 hashes")
        if len(files) > self.limits.max_files:
            raise UploadRefused(
                f"{len(files)} files is over the limit of {self.limits.max_files}; "
                "exclude data and build folders in slipstream.toml [sync] exclude"
            )
        for path, sha in files.items():
            validate_path(path, self.limits)
            validate_sha(sha)
        return files

    def check_sizes(self, files: dict[str, str], sizes: dict[str, int]) -> None:
        """Refuse a project over the limits from the sizes its client sent, before any upload:
        naming its biggest files and what raises the limit."""
        if not isinstance(sizes, dict):
            raise UploadRefused("'sizes' must map paths to their sizes in bytes")
        size = {p: int(sizes.get(p, 0)) for p in files}
        per_sha = {sha: size[p] for p, sha in files.items()}
        total = sum(per_sha.values())
        biggest = sorted(size.items(), key=lambda kv: -kv[1])[:5]
        named = ", ".join(f"{p} ({n / 1e6:.1f} MB)" for p, n in biggest)
        over = [(p, n) for p, n in biggest if n > self.limits.max_file_bytes]
        if over:
            raise UploadRefused(
                f"{over[0][0]} is {over[0][1] / 1e6:.1f} MB, over the runtime's "
                f"{self.limits.max_file_bytes / 1e6:.0f} MB per-file limit; nothing was uploaded. "
                "Leave it out ([sync] exclude in slipstream.toml, or .gitignore) and load it at run "
                "time, or raise the limit: slipstream serve --max-file-mb"
            )
        if total > self.limits.max_total_bytes:
            raise UploadRefused(
                f"the project is {total / 1e6:.1f} MB, over the runtime's "
                f"{self.limits.max_total_bytes / 1e6:.0f} MB limit; nothing was uploaded. Its "
                f"biggest files: {named}. Leave data out ([sync] exclude in slipstream.toml, or "
                ".gitignore) or raise the limit: slipstream serve --max-project-mb"
            )

    def missing(self, files: dict[str, str]) -> list[str]:
        self.check_manifest(files)
        out = set()
        for sha in set(files.values()):
            try:
                st = (self.blobs / sha).stat()
            except FileNotFoundError:
                out.add(sha)
                continue
            if st.st_nlink == 1:  # unused but about to be: not collected before its commit
                with contextlib.suppress(OSError):
                    os.utime(self.blobs / sha)
        return sorted(out)

    def put(self, sha: str, data: bytes) -> None:
        validate_sha(sha)
        if len(data) > self.limits.max_file_bytes:
            raise UploadRefused(
                f"file of {len(data)} bytes is over the {self.limits.max_file_bytes} byte limit; "
                "keep weights and data out of the synced code (load them with keep())"
            )
        if hashlib.sha256(data).hexdigest() != sha:
            raise UploadRefused(
                "uploaded bytes do not match their SHA-256; the upload was corrupted"
            )
        target = self.blobs / sha
        if target.exists():
            return
        tmp = target.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def commit(
        self,
        files: dict[str, str],
        entries: list[str],
        paths: list[str] | None = None,
        skipped: dict[str, str] | None = None,
    ) -> Generation:
        self.check_manifest(files)
        paths = check_paths(paths)
        missing = self.missing(files)
        if missing:
            raise UploadRefused(
                f"{len(missing)} file(s) were not uploaded before the commit; sync again"
            )
        total = sum((self.blobs / sha).stat().st_size for sha in set(files.values()))
        if total > self.limits.max_total_bytes:
            raise UploadRefused(
                f"the project is {total} bytes, over the {self.limits.max_total_bytes} byte limit"
            )
        with self._lock:
            self._counter += 1
            gen_id = f"g{self._counter}"
        d = self.gens / gen_id
        d.mkdir()
        for path, sha in files.items():
            dst = d / path
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blobs / sha, dst)
                except OSError:
                    shutil.copyfile(self.blobs / sha, dst)
            except OSError as exc:  # e.g. "a.py" both a file and a folder: the client's mistake
                shutil.rmtree(d, ignore_errors=True)
                raise UploadRefused(f"cannot lay out {path!r}: {exc.strerror or exc}") from None
        skips = (
            {str(k): str(v) for k, v in (skipped or {}).items()}
            if isinstance(skipped, dict)
            else {}
        )
        return Generation(gen_id, d, dict(files), [e for e in entries if e in files], paths, skips)

    def activate(self, gen: Generation) -> None:
        """Make gen the live generation and drop the oldest beyond keep_generations (never the
        live one). Processes run from folders of their own (<gens>/.live-<pid>, see
        reload.CodeLoader), so dropping a generation never touches code a worker runs; the
        folders of processes that are gone are removed here."""
        self.current = gen
        self.history.append(gen)
        # what a restarted runtime deploys again (service.Runtime.restore)
        state = {
            "id": gen.id,
            "files": gen.files,
            "entries": gen.entries,
            "paths": gen.paths,
            "skipped": gen.skipped,
        }
        tmp = self.gens / f"{CURRENT_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.gens / CURRENT_FILE)
        dropped = False
        for old in self.history[: -self.keep_generations]:
            if old is not gen:
                shutil.rmtree(old.dir, ignore_errors=True)
                dropped = True
        self.history = self.history[-self.keep_generations :]
        self.drop_dead_processes()
        if dropped:
            self.collect_blobs_soon()

    def collect_blobs_soon(self) -> None:
        """collect_blobs on a thread of its own (a deploy never waits for it), one at a time."""
        if _collecting.acquire(blocking=False):

            def run() -> None:
                try:
                    self.collect_blobs()
                finally:
                    _collecting.release()

            threading.Thread(target=run, name="store-gc", daemon=True).start()

    def collect_blobs(self) -> list[str]:
        """Remove the blobs no kept generation of any project uses, so the store's size on disk
        stays bounded: a generation's files and the live folders of the processes running it
        are hard links of its blobs, so a blob whose only link is its own is used by none (one
        younger than blob_grace_s stays: its commit may be on its way). The removed hashes."""
        removed = []
        cutoff = time.time() - self.blob_grace_s
        for blob in self.blobs.iterdir():
            try:
                st = blob.stat()
                if (
                    st.st_nlink == 1
                    and st.st_mtime <= cutoff
                    and len(blob.name) == 64
                    and stat.S_ISREG(st.st_mode)
                ):
                    blob.unlink()
                    removed.append(blob.name)
            except OSError:
                continue
        return removed

    def drop_dead_processes(self) -> None:
        for live in self.gens.glob(".live-*"):
            try:
                os.kill(int(live.name.removeprefix(".live-")), 0)
                continue
            except ValueError:
                continue  # not one of ours
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError):
                continue
            shutil.rmtree(live, ignore_errors=True)

    def discard(self, gen: Generation) -> None:
        shutil.rmtree(gen.dir, ignore_errors=True)
        self.collect_blobs_soon()  # a refused deploy's new files are used by nothing
