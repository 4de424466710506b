"""Errors keep their origin: a nested call's frames, custom exception classes, results the
caller cannot unpickle (issue "Nothing silently lost")."""

from __future__ import annotations

import traceback

import pytest

import slipstream
from slipstream.errors import RemoteError, SlipstreamError

ERRS = """
import os, sys, tempfile
from slipstream import endpoint


class QuotaExceeded(Exception):
    def __init__(self, user, limit):
        super().__init__(f"{user} is over the quota of {limit}")
        self.user = user
        self.limit = limit


@endpoint
def inner(x):
    if x < 0:
        raise ValueError(f"inner refused {x}")  # the inner raising line
    if x == 0:
        raise QuotaExceeded("alice", 5)
    return x


@endpoint
def outer(x):
    return inner(x) + 1  # the outer call site


@endpoint
def quota():
    raise QuotaExceeded("bob", 7)


def _runtime_only():
    # a module that exists only on the runtime (the caller cannot import it)
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "runtime_only_mod.py"), "w") as f:
        f.write(
            "class Thing:\\n    def __init__(self, v):\\n        self.v = v\\n"
            "class Exploded(Exception):\\n    pass\\n"
        )
    sys.path.insert(0, d)
    import runtime_only_mod

    return runtime_only_mod


@endpoint
def unreadable():
    return _runtime_only().Thing(3)


@endpoint
def foreign_error():
    raise _runtime_only().Exploded("boom")
"""


def _shown(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_a_nested_calls_error_keeps_the_inner_endpoints_frames(runtime, project_factory):
    proj = project_factory(runtime, {"errs.py": ERRS})
    app = proj.module("errs")
    with pytest.raises(ValueError, match="inner refused -1") as info:
        app.outer(-1)
    shown = _shown(info.value)
    assert "return inner(x) + 1  # the outer call site" in shown
    assert 'raise ValueError(f"inner refused {x}")  # the inner raising line' in shown, shown
    assert shown.index("the outer call site") < shown.index("the inner raising line"), (
        "most recent call last: the outer frame, then the inner one"
    )
    assert f'File "{proj.root / "errs.py"}", line 16, in inner' in shown, shown
    assert shown.count("raised on the Slipstream runtime") == 1, shown


def test_a_custom_exception_class_arrives_as_itself(runtime, project_factory):
    proj = project_factory(runtime, {"errs.py": ERRS})
    app = proj.module("errs")
    with pytest.raises(app.QuotaExceeded) as info:
        app.quota()
    assert (info.value.user, info.value.limit) == ("bob", 7)
    assert str(info.value) == "bob is over the quota of 7"
    with pytest.raises(app.QuotaExceeded) as nested:  # through a nested call too
        app.outer(0)
    assert (nested.value.user, nested.value.limit) == ("alice", 5)
    shown = _shown(nested.value)
    assert shown.count("raised on the Slipstream runtime") == 1, shown
    assert "RemoteError" not in shown, shown


def test_a_class_the_caller_cannot_import_is_one_clear_error(runtime, project_factory):
    proj = project_factory(runtime, {"errs.py": ERRS})
    app = proj.module("errs")
    with pytest.raises(RemoteError) as info:
        app.foreign_error()
    msg = str(info.value)
    assert msg.startswith("runtime_only_mod.Exploded: boom"), msg
    assert msg.count("Exploded") == 1, msg
    assert info.value.type_name == "runtime_only_mod.Exploded"
    shown = _shown(info.value)
    assert "No module named 'runtime_only_mod'" in shown, shown
    assert shown.count("raised on the Slipstream runtime") == 1, shown


def test_a_result_the_caller_cannot_unpickle_names_the_module_and_counts(runtime, project_factory):
    proj = project_factory(runtime, {"errs.py": ERRS})
    app = proj.module("errs")
    calls = slipstream.spend()["calls"]
    with pytest.raises(SlipstreamError) as info:
        app.unreadable()
    msg = str(info.value)
    assert "unreadable" in msg and "runtime_only_mod" in msg, msg
    assert "return plain data" in msg.lower() and "import" in msg, msg
    assert not isinstance(info.value, ModuleNotFoundError)
    assert info.value.__cause__ is None and info.value.__context__ is None, "no pickle frames"
    shown = _shown(info.value)
    assert "pickle.loads" not in shown and "wire.py" not in shown, shown
    assert slipstream.spend()["calls"] == calls + 1, "the call ran and is counted"
    assert app.unreadable.last_call is not None
