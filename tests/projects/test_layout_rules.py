"""The rules that map a project on disk to what the runtime imports (fast, no processes).

The end-to-end tests next to this file show the rules working on a runtime; these pin each
rule to the layout a user has, so a regression names the rule that broke.
"""

from __future__ import annotations

import pytest
from project_shapes import make_project

from slipstream.sdk.config import find_project_root, import_paths, module_import_root
from slipstream.server.store import UploadRefused, check_paths
from slipstream.worker.reload import module_for, shadowed_stdlib


def test_package_without_config_is_rooted_above_the_package(tmp_path):
    proj = make_project(tmp_path, "package")
    assert find_project_root(proj.root / "app/a.py") == proj.root
    assert find_project_root(proj.root / "app/sub/deep.py") == proj.root
    assert find_project_root(proj.root / "main.py") == proj.root
    assert import_paths(proj.root) == [""]


def test_src_layout_is_rooted_at_pyproject_with_src_on_the_path(tmp_path):
    proj = make_project(tmp_path, "src_layout")
    assert find_project_root(proj.root / "src/mypkg/model.py") == proj.root
    assert import_paths(proj.root) == ["", "src"]
    files = set(proj.root.rglob("*.py"))
    rels = {p.relative_to(proj.root).as_posix() for p in files}
    assert module_for("src/mypkg/model.py", rels, ["", "src"]) == "mypkg.model"
    assert module_for("run.py", rels, ["", "src"]) == "run"


def test_namespace_package_rooted_by_its_imports_under_pyproject(tmp_path):
    proj = make_project(tmp_path, "namespace")
    # without any marker a loose file is a script in its own folder, as `python file.py` runs it
    assert find_project_root(proj.root / "ns/tools/work.py") == proj.root / "ns/tools"
    proj.write("pyproject.toml", "[project]\nname = 'x'\n")
    assert find_project_root(proj.root / "ns/tools/work.py") == proj.root
    assert (
        find_project_root(proj.root / "ns/tools" / "__file__") == proj.root
    )  # the editor asks per folder
    assert (
        module_for("ns/tools/work.py", {"ns/tools/work.py", "ns/tools/helpers.py"}, [""])
        == "ns.tools.work"
    )
    # a script that imports nothing of the package stays in its folder, as Python runs it
    proj.write("scripts/tool.py", "import helper\n")
    assert find_project_root(proj.root / "scripts/tool.py") == proj.root / "scripts"


def test_config_file_wins_and_the_sdk_knows_the_import_root_from_the_module_name(tmp_path):
    proj = make_project(tmp_path, "namespace")
    assert module_import_root("ns.tools.work", proj.root / "ns/tools/work.py") == proj.root
    assert find_project_root(proj.root / "ns/tools/work.py", proj.root) == proj.root
    assert module_import_root("other.work", proj.root / "ns/tools/work.py") is None
    (proj.root / "ns" / "slipstream.toml").write_text("")
    assert find_project_root(proj.root / "ns/tools/work.py", proj.root) == proj.root / "ns"


def test_module_names_follow_python(tmp_path):
    files = {
        "app/__init__.py",
        "app/a.py",
        "app/sub/__init__.py",
        "app/sub/d.py",
        "main.py",
        "ns/t/w.py",
        "my-scripts/x.py",
        "scripts/run.py",
    }
    assert module_for("app/sub/d.py", files, [""]) == "app.sub.d"
    assert module_for("app/__init__.py", files, [""]) == "app"
    assert module_for("ns/t/w.py", files, [""]) == "ns.t.w"
    assert (
        module_for("scripts/run.py", files, ["scripts", ""]) == "run"
    )  # the deepest path above it
    assert module_for("app/a.py", files, ["app", ""]) == "app.a"  # a package is named from its top
    assert module_for("my-scripts/x.py", files, [""]) is None  # not importable by name
    assert module_for("notes.txt", files, [""]) is None


def test_stdlib_names_are_found_only_at_top_level(tmp_path):
    files = {
        "calendar.py",
        "email/__init__.py",
        "app/__init__.py",
        "app/json.py",
        "src/types.py",
        "main.py",
    }
    assert shadowed_stdlib(files, [""]) == [
        ("calendar.py", "calendar"),
        ("email/__init__.py", "email"),
    ]
    assert ("src/types.py", "types") in shadowed_stdlib(files, ["", "src"])


def test_commit_paths_are_checked():
    assert check_paths(None) == [""]
    assert check_paths([".", "src/", "src"]) == ["", "src"]
    for bad in (["../up"], ["/abs"], "src", [1]):
        with pytest.raises(UploadRefused):
            check_paths(bad)
