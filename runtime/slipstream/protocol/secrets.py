"""Secrets on the wire: the call's keyword argument that carries them, and the worker's side
(set them in its environment, mask their values in what it reports). The SDK's side, which
reads them from the environment and .env, is sdk/secretvals.py."""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["SECRETS_KEY", "MASK", "take", "mask", "mask_bytes_present"]

SECRETS_KEY = (
    "__slipstream_secrets__"  # the call's keyword argument that carries them (popped by the worker)
)
MASK = "****"
_MIN_MASKED = 4  # shorter values would mask ordinary text

_known: set[str] = set()  # in a worker: the values seen, for masking
_lock = threading.Lock()


def take(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the call's secrets from its keyword arguments into the environment (and remember
    their values for masking); the rest are the function's arguments."""
    values = kwargs.pop(SECRETS_KEY, None)
    if isinstance(values, dict) and values:
        with _lock:
            for k, v in values.items():
                if isinstance(k, str) and isinstance(v, str):
                    os.environ[k] = v
                    if len(v) >= _MIN_MASKED:
                        _known.add(v)
    return kwargs


def mask(text: str) -> str:
    """Text with every secret value this worker was given replaced by ****."""
    if not _known:
        return text
    for v in sorted(_known, key=len, reverse=True):
        if v in text:
            text = text.replace(v, MASK)
    return text


def mask_bytes_present(data: bytes | bytearray | memoryview) -> bool:
    """True when a secret value appears in these bytes (a pickled exception carrying it)."""
    if not _known or not data:
        return False
    raw = bytes(data)
    return any(v.encode() in raw for v in _known)
