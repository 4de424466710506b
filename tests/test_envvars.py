"""Every SLIPSTREAM_* variable that runtime/ or daemon/ reads or sets is named once, in
slipstream/protocol/envvars.py, and imported from there (tests may spell them out)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from slipstream.protocol import envvars

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"SLIPSTREAM_[A-Z0-9_]+")
NOT_A_VARIABLE = {
    "SLIPSTREAM_RELOAD"
}  # worker/reload.py: a module attribute (`SLIPSTREAM_RELOAD = "restart"`)


def test_no_module_spells_a_variable_name_but_envvars():
    spelled = []
    for folder in ("runtime/slipstream", "daemon/slipstream_daemon"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "runtime/slipstream/protocol/envvars.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and NAME.fullmatch(node.value)
                    and node.value not in NOT_A_VARIABLE
                ):
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not spelled, (
        "use slipstream.protocol.envvars (the daemon: slipstream.sdk.envvars):\n"
        + "\n".join(spelled)
    )


def test_each_name_is_defined_once_and_is_what_it_says():
    names = {k: v for k, v in vars(envvars).items() if k.isupper()}
    assert all(v.startswith("SLIPSTREAM_") for v in names.values())
    assert len(set(names.values())) == len(names), "two constants for one variable"
