"""The Slipstream language server (pygls): lenses, hovers, diagnostics, save-to-deploy, runs.

Start it with `slipstream daemon` or `python -m slipstream_daemon`; see docs/lsp-protocol.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
