"""The session module, imported at the first call (it brings the HTTP client): shared by the
call forms (calling.py, mapping.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["session_module"]


def session_module() -> Any:
    """slipstream.sdk.session, imported at the first call. When a project module named like a
    standard-library one breaks that import (Python gives the project's calendar.py to httpx),
    say which file and what to do instead of a bare ImportError from deep inside a library."""
    try:
        from . import session
    except ImportError as exc:
        from .config import shadowing_modules

        found = shadowing_modules()
        if not found:
            raise
        name, path = found[0]
        raise ImportError(
            f"{path} has the name of the standard-library module '{name}', so Python gives it to "
            f"every `import {name}` in this process (Slipstream's own included: {exc}). Rename it "
            f"(e.g. {name}_utils.py) and update its imports; the runtime refuses such a project too."
        ) from exc
    return session
