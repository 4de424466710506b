"""The SLIPSTREAM_* environment variables that pass facts between processes (the SDK, the
runtime server, its workers): one name each, imported wherever it is read or set."""

from __future__ import annotations

RUNTIME_URL = "SLIPSTREAM_RUNTIME_URL"  # the runtime the SDK calls (else the embedded one)
TOKEN = "SLIPSTREAM_TOKEN"  # its bearer token
IN_RUNTIME = "SLIPSTREAM_IN_RUNTIME"  # set in workers: a call from endpoint code is a nested call
PROJECT = "SLIPSTREAM_PROJECT"  # set in workers: nested calls stay in their project
