"""Shared-memory buffers for large payloads between the runtime and its local workers.

A request or result over THRESHOLD bytes travels as a file in /dev/shm that both processes
map, instead of being copied through the worker's socket.
"""

from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path

from . import envvars

__all__ = ["THRESHOLD", "available", "SharedBuffer", "attach", "cleanup"]

THRESHOLD = 1 << 20
_DIR = Path("/dev/shm")
PREFIX = "slipstream-"
# Fault the pages in with one call rather than one fault per 4 KiB page as they are touched.
_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def available() -> bool:
    return _DIR.is_dir() and os.access(_DIR, os.W_OK) and os.environ.get(envvars.NO_SHM) != "1"


class SharedBuffer:
    """A new shared-memory file of `size` bytes, mapped read-write."""

    def __init__(self, size: int, tag: str = "") -> None:
        self.path = str(_DIR / f"{PREFIX}{tag}{secrets.token_hex(8)}")
        self.size = size
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size, flags=_FLAGS)
        finally:
            os.close(fd)
        self.view = memoryview(self.mm)

    def write(self, chunks: list) -> None:
        pos = 0
        for c in chunks:
            m = memoryview(c).cast("B")
            self.view[pos : pos + m.nbytes] = m
            pos += m.nbytes

    def ref(self) -> dict:
        return {"path": self.path, "size": self.size}

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Drop this process's mapping once nothing exported from it is still in use."""
        self.view.release()
        try:
            self.mm.close()
        except BufferError:
            pass  # a value still points into it; the mapping goes when that value does


def attach(ref: dict, unlink: bool = False, writable: bool = True) -> memoryview:
    """Map a buffer another process created; the mapping lives as long as the view."""
    path, size = ref["path"], int(ref["size"])
    if not path.startswith(str(_DIR / PREFIX)) or "/" in path[len(str(_DIR)) + 1 :]:
        raise ValueError("not a Slipstream shared-memory buffer")
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        mm = mmap.mmap(fd, size, flags=_FLAGS, prot=prot)
    finally:
        os.close(fd)
        if unlink:
            os.unlink(path)
    return memoryview(mm)


def cleanup(tag: str) -> None:
    """Remove buffers left behind by crashed workers of this runtime."""
    for p in _DIR.glob(f"{PREFIX}{tag}*"):
        try:
            p.unlink()
        except OSError:
            pass
