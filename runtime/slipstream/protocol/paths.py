"""What a project-relative path and a blob name may be: checked by the runtime on upload and by a
worker fetching blobs from a peer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["UploadRefused", "Limits", "validate_path", "check_paths", "validate_sha"]


_SHA = re.compile(r"^[0-9a-f]{64}$")


class UploadRefused(ValueError):
    """A manifest or blob the runtime will not take; says why and what to do."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024
    max_files: int = 20_000
    max_path_len: int = 512


def validate_path(path: str, limits: Limits = Limits()) -> str:
    """A safe project-relative POSIX path, or UploadRefused."""
    if not isinstance(path, str) or not path:
        raise UploadRefused("empty path in manifest")
    if len(path) > limits.max_path_len:
        raise UploadRefused(f"path too long ({len(path)} > {limits.max_path_len}): {path[:60]}...")
    if "\\" in path or "\x00" in path or any(ord(c) < 32 for c in path):
        raise UploadRefused(f"path {path!r} has control characters or backslashes; use POSIX paths")
    p = PurePosixPath(path)
    if p.is_absolute() or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UploadRefused(f"path {path!r} is absolute; manifests hold project-relative paths")
    parts = path.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise UploadRefused(
            f"path {path!r} leaves the project or is not normalised ('..', '.', '//')"
        )
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in parts):
        raise UploadRefused(f"path {path[:60]!r}... has a file or folder name over 255 bytes")
    return path


def check_paths(paths: list[str] | None) -> list[str]:
    """The commit's import paths: project-relative folders for sys.path ("" = the root)."""
    if paths is None:
        return [""]
    if not isinstance(paths, list) or len(paths) > 32:
        raise UploadRefused("'paths' must be a list of at most 32 project-relative folders")
    out = []
    for p in paths:
        if not isinstance(p, str):
            raise UploadRefused(f"import path {p!r} is not a string")
        p = p.rstrip("/") if p != "/" else p
        if p not in ("", "."):
            validate_path(p)
        p = "" if p == "." else p
        if p not in out:
            out.append(p)
    return out or [""]


def validate_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise UploadRefused(f"{sha!r} is not a lowercase hex SHA-256")
    return sha
