"""The SLIPSTREAM_* variable names (protocol/envvars.py), for the editor's daemon: it imports the
SDK, never the protocol, so it reads them through here."""

from __future__ import annotations

from ..protocol.envvars import CACHE, LOG_LEVEL, RUNTIME_URL, TOKEN

__all__ = ["CACHE", "LOG_LEVEL", "RUNTIME_URL", "TOKEN"]
