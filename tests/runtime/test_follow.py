"""worker/follow.py alone: kept objects move onto re-executed classes, or are named stale.

Each case builds the "old" and "new" versions of a project module in-process (as a reload
does: a fresh module object per version), keeps objects of the old classes, and checks what
follow() does with them.
"""

from __future__ import annotations

import sys
import textwrap
import types
from typing import Any

from slipstream.worker.follow import follow


def module(src: str, name: str = "proj.model") -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # as an import does (dataclasses looks its module up)
    try:
        exec(compile(textwrap.dedent(src), f"/live/{name}.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[name]
    return mod


BASE = """
    from dataclasses import dataclass

    class Base:
        def kind(self):
            return "base1"

    class Model(Base):
        def __init__(self):
            self.child = Child()
            self.items = [Child(), {"k": Child()}]

        def run(self):
            return "run1"

    class Child:
        def run(self):
            return "child1"

    class Slotted:
        __slots__ = ("a",)

        def __init__(self):
            self.a = 1

    @dataclass
    class Cfg:
        n: int = 1

        def show(self):
            return "cfg1"
"""


def edited(*pairs: tuple[str, str]) -> str:
    src = BASE
    for old, new in pairs:
        assert old in src
        src = src.replace(old, new)
    return src


def test_methods_of_objects_and_what_they_reach_follow_with_state_kept() -> None:
    old = module(BASE)
    m = old.Model()
    child = m.child
    new = module(edited(('"run1"', '"run2"'), ('"child1"', '"child2"'), ('"base1"', '"base2"')))
    report = follow({"m": m}, {"proj.model": new})
    assert (m.run(), m.kind(), m.child.run()) == ("run2", "base2", "child2")
    assert m.items[0].run() == "child2" and m.items[1]["k"].run() == "child2"
    assert isinstance(m, new.Model) and isinstance(m, new.Base)
    assert m.child is child  # the same object, not a copy
    assert report.updated == 4 and not report.stale
    assert report.classes == ["proj.model.Child", "proj.model.Model"]


def test_an_init_change_leaves_the_object_on_its_old_class_and_names_it() -> None:
    old = module(BASE)
    m = old.Model()
    new = module(
        edited(("self.child = Child()", "self.child = Child()\n            self.extra = 1"))
    )
    report = follow({"gpt": m}, {"proj.model": new})
    assert type(m) is old.Model, "a half-updated object (no .extra) must not run the new code"
    assert [(s.key, s.path, s.cls) for s in report.stale] == [("'gpt'", "", "proj.model.Model")]
    assert "__init__ changed" in report.stale[0].why
    assert isinstance(m.child, new.Child)  # what it holds still follows


def test_moving_a_method_down_a_line_is_no_change_to_init() -> None:
    old = module(BASE)
    m = old.Model()
    new = module(edited(("class Model(Base):\n", "class Model(Base):\n\n    # a comment\n")))
    assert not follow({"m": m}, {"proj.model": new}).stale
    assert isinstance(m, new.Model)


def test_bases_slots_fields_and_removed_classes_are_stale_with_their_reason() -> None:
    old = module(BASE)
    kept: dict[str, Any] = {"s": old.Slotted(), "cfg": old.Cfg(), "child": old.Child()}
    new = module(
        edited(
            ('__slots__ = ("a",)', '__slots__ = ("a", "b")'),
            ("n: int = 1", "n: int = 1\n        m: int = 2"),
            ("class Child:", "class Kid:"),
        )
    )
    report = follow(kept, {"proj.model": new})
    why = {s.key: s.why for s in report.stale}
    assert "__slots__ changed" in why["'s'"]
    assert "dataclass fields changed" in why["'cfg'"]
    assert "no longer defined" in why["'child'"]
    rebased = module(edited(("class Model(Base):", "class Model:")))
    assert (
        "base classes changed" in follow({"m": old.Model()}, {"proj.model": rebased}).stale[0].why
    )


def test_a_stale_object_follows_once_its_class_is_edited_back() -> None:
    old = module(BASE)
    m = old.Model()
    changed = module(
        edited(("self.child = Child()", "self.child = Child()\n            self.x = 1"))
    )
    assert follow({"m": m}, {"proj.model": changed}).stale
    back = module(edited(('"run1"', '"run3"')))  # __init__ as the object was built
    report = follow({"m": m}, {"proj.model": back})
    assert not report.stale and m.run() == "run3"


def test_objects_of_classes_outside_the_project_or_a_failed_module_are_handled() -> None:
    old = module(BASE)
    report = follow({"d": {"x": [1, 2, "s"]}, "m": old.Model()}, {"proj.model": None})
    assert report.stale and "could not be imported again" in report.stale[0].why
    assert follow({"d": {"x": [1, 2]}}, {}).updated == 0
