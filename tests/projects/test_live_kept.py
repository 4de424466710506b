"""Live means live for kept models: after a save, what keep() holds runs the saved code.

Real ML projects as their authors lay them out (a nanoGPT-like `model.py` of nn.Module classes
used by a class endpoint that keeps the model; a package layout with `from mypkg.model import
GPT`; a plain class; a dataclass), synced to a served runtime (`slipstream serve`), edited as an
editor saves them, and called. Weights must stay where they are (no rebuild); where the kept
object cannot take the new code (its `__init__` or fields changed), the deploy says so, and
`rebuild` loads it again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from project_shapes import ProjectDir

MODEL = """
import torch
import torch.nn as nn

LOADS = []  # GPTs built since this module last ran (a reload starts it again)


class MLP(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x):
        return self.fc(x)


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.mlp = MLP(n)

    def forward(self, x):
        return x + self.mlp(x)


class GPT(nn.Module):
    def __init__(self, n=4, layers=2):
        super().__init__()
        LOADS.append(1)
        self.h = nn.ModuleList([Block(n) for _ in range(layers)])

    def forward(self, x):
        for b in self.h:
            x = b(x)
        return x

    def generate(self):
        return "v1"
"""

SAMPLE = """
import torch

from slipstream import endpoint, keep

import model


@endpoint
class Sampler:
    def setup(self):
        torch.manual_seed(0)
        self.model = keep("gpt", model.GPT)

    def generate(self):
        m = self.model
        return {
            "text": m.generate(),
            "out": m(torch.ones(1, 4)).sum().item(),
            "is_current_class": isinstance(m, model.GPT),
            "weights": m.h[0].mlp.fc.weight.data_ptr(),
            "builds": len(model.LOADS),
        }
"""


def generate(rt, proj: ProjectDir) -> dict:
    client = proj.client(rt)
    try:
        out = client.call("Sampler", "generate", (), {}, timeout=60)
    finally:
        client.close()
    assert out.error is None, f"{out.error.type}: {out.error.message}"
    return out.value


@pytest.fixture()
def gpt(tmp_path: Path) -> ProjectDir:
    proj = ProjectDir(tmp_path / "nanogpt")
    proj.write("model.py", MODEL)
    proj.write("sample.py", SAMPLE)
    return proj


@pytest.mark.slow
def test_editing_the_kept_models_methods_is_live_with_its_weights_kept(runtime, gpt):
    gpt.sync(runtime)
    first = generate(runtime, gpt)
    assert first["text"] == "v1" and first["is_current_class"]

    # a method of the model's own class
    gpt.edit("model.py", 'return "v1"', 'return "v2"')
    res = gpt.sync(runtime)
    assert "model" in res.reexecuted
    after = generate(runtime, gpt)
    assert after["text"] == "v2", "the kept GPT still runs the old generate()"
    assert after["is_current_class"], "isinstance(kept, model.GPT) is False after the reload"
    assert after["weights"] == first["weights"] and after["out"] == first["out"]
    assert res.kept["Sampler"]["updated"] >= 1 and not res.kept["Sampler"]["stale"], res.kept

    # forward() of a submodule (MLP inside Block inside GPT's ModuleList)
    gpt.edit("model.py", "return self.fc(x)", "return self.fc(x) * 0")
    gpt.sync(runtime)
    doubled = generate(runtime, gpt)
    assert doubled["out"] == pytest.approx(4.0), "MLP.forward of a child module ran the old code"

    # a method and a property added, used by the kept object
    gpt.edit(
        "model.py",
        '    def generate(self):\n        return "v2"',
        "    @property\n    def width(self):\n        return 4\n\n"
        '    def tag(self):\n        return "v3"\n\n'
        "    def generate(self):\n        return self.tag() + str(self.width)",
    )
    gpt.sync(runtime)
    added = generate(runtime, gpt)
    assert added["text"] == "v34"
    assert added["builds"] == 0 and added["weights"] == first["weights"], "the model was rebuilt"


@pytest.mark.slow
def test_a_changed_init_is_reported_stale_and_rebuild_applies_it(runtime, gpt):
    gpt.sync(runtime)
    first = generate(runtime, gpt)

    gpt.edit("model.py", "LOADS.append(1)", "LOADS.append(1)\n        self.scale = 2")
    gpt.edit("model.py", 'return "v1"', 'return "v2 x%d" % self.scale')
    res = gpt.sync(runtime)
    stale = res.kept["Sampler"]["stale"]
    assert [(s["key"], s["cls"]) for s in stale] == [("'gpt'", "model.GPT")], res.kept
    assert "__init__ changed" in stale[0]["why"]
    note, warnings = res.kept_lines()
    assert warnings and "slipstream rebuild Sampler" in warnings[0], warnings
    # consistently the old code (not a half-updated object missing self.scale)
    assert generate(runtime, gpt)["text"] == "v1"
    status = gpt.client(runtime).endpoints(gpt.key)
    assert [s["key"] for s in status[0]["stale"]] == ["'gpt'"]
    # a save of another module (the endpoint's, not model.py) does not forget it
    gpt.edit("sample.py", "m = self.model", "m = self.model  # edited")
    res = gpt.sync(runtime)
    assert res.reexecuted == ["sample"], res.reexecuted
    assert [s["key"] for s in res.kept["Sampler"]["stale"]] == ["'gpt'"], res.kept

    client = gpt.client(runtime)
    try:
        rebuilt = client.rebuild("Sampler", gpt.key, stale=True)
    finally:
        client.close()
    assert rebuilt["released"] == ["'gpt'"] and rebuilt["model_loads"] == 1 and not rebuilt["stale"]
    after = generate(runtime, gpt)
    assert after["text"] == "v2 x2" and after["is_current_class"]
    assert after["weights"] != first["weights"]  # a new object, built by the new __init__


PLAIN = {
    "mypkg/__init__.py": "",
    "mypkg/model.py": """
        from dataclasses import dataclass


        @dataclass
        class Config:
            size: int = 3

            def describe(self):
                return f"size {self.size}"


        class Tokenizer:
            def __init__(self, cfg):
                self.cfg = cfg
                self.vocab = {"a": 1}

            def encode(self, s):
                return [self.vocab.get(c, 0) for c in s]


        class Base:
            def kind(self):
                return "base-v1"


        class Model(Base):
            def __init__(self):
                self.cfg = Config()
                self.tok = Tokenizer(self.cfg)
                self.parts = [Tokenizer(self.cfg)]
    """,
    "app.py": """
        from slipstream import endpoint, keep

        from mypkg.model import Config, Model


        @endpoint
        def run(text: str):
            m = keep("m", Model)
            return [m.tok.encode(text), m.parts[0].encode(text), m.cfg.describe(), m.kind(),
                    isinstance(m.cfg, Config)]
    """,
}


@pytest.mark.slow
def test_plain_classes_dataclasses_and_subclasses_in_a_package_follow(runtime, tmp_path):
    proj = ProjectDir(tmp_path / "plain")
    for rel, text in PLAIN.items():
        proj.write(rel, text)
    proj.sync(runtime)
    assert proj.call(runtime, "run", "ab") == [[1, 0], [1, 0], "size 3", "base-v1", True]

    proj.edit("mypkg/model.py", "self.vocab.get(c, 0)", "self.vocab.get(c, 9)")
    proj.edit("mypkg/model.py", 'f"size {self.size}"', 'f"SIZE {self.size}"')
    proj.edit("mypkg/model.py", '"base-v1"', '"base-v2"')
    res = proj.sync(runtime)
    assert proj.call(runtime, "run", "ab") == [[1, 9], [1, 9], "SIZE 3", "base-v2", True]
    assert not res.kept["run"]["stale"] if "run" in res.kept else True

    # a dataclass's fields changed: the kept Config cannot just take the new class
    proj.edit("mypkg/model.py", "size: int = 3", "size: int = 3\n    name: str = 'x'")
    res = proj.sync(runtime)
    assert proj.call(runtime, "run", "ab")[2] == "SIZE 3"
    stale = proj.client(runtime).endpoints(proj.key)[0]["stale"]
    assert [(s["cls"], s["path"]) for s in stale] == [("mypkg.model.Config", "cfg")], stale
    assert "dataclass fields changed" in stale[0]["why"]


CONFIGURATOR = {
    # nanoGPT's style: defaults as globals, then a config file exec'd over them, read by a
    # relative path (the project root is the working directory on every runtime)
    "config/small.py": "n_layer = 2\n",
    "configurator.py": """
        import sys

        for arg in sys.argv[1:]:  # `python sample.py --x=1` style overrides
            key, _, val = arg.lstrip("-").partition("=")
            globals()[key] = int(val)
    """,
    "sample.py": """
        import os
        import sys

        from slipstream import endpoint

        n_layer = 12
        exec(open("config/small.py").read())
        exec(open("configurator.py").read())


        @endpoint
        def settings():
            return {"n_layer": n_layer, "argv": [os.path.basename(a) for a in sys.argv],
                    "cwd_has_config": os.path.isdir("config")}
    """,
}


@pytest.mark.slow
def test_a_py_file_read_as_text_reloads_its_reader_and_paths_are_the_projects(runtime, tmp_path):
    proj = ProjectDir(tmp_path / "configured")
    for rel, text in CONFIGURATOR.items():
        proj.write(rel, text)
    proj.sync(runtime)
    # argv is the script's (no runtime flags for the configurator to choke on); the working
    # directory is the project's, wherever `slipstream serve` was started
    assert proj.call(runtime, "settings") == {
        "n_layer": 2,
        "argv": ["sample.py"],
        "cwd_has_config": True,
    }
    proj.edit("config/small.py", "n_layer = 2", "n_layer = 6")
    res = proj.sync(runtime)
    assert "sample" in res.reexecuted, res
    assert proj.call(runtime, "settings")["n_layer"] == 6


@pytest.mark.slow
def test_dev_says_the_kept_model_follows_and_names_a_stale_one(gpt, dev_server):
    dev = dev_server(gpt.root)
    assert dev.call("Sampler/generate")["text"] == "v1"  # a warm worker holding the model
    gpt.edit("model.py", 'return "v1"', 'return "v2"')
    line = dev.wait_for("↻", "model.py", "live")
    assert "kept objects follow" in line and "GPT" in line, line
    assert dev.call("Sampler/generate")["text"] == "v2"

    gpt.edit("model.py", "LOADS.append(1)", "LOADS.append(1)\n        self.scale = 2")
    warning = dev.wait_for("⚠ Sampler: kept 'gpt'")
    assert "__init__ changed" in warning and "slipstream rebuild Sampler" in warning, warning


@pytest.mark.slow
def test_rebuild_from_the_cli_reaches_the_runtime_dev_started(gpt, dev_server, tmp_path):
    """`slipstream rebuild` in the project's folder finds the embedded runtime of `slipstream
    dev` (its token exists nowhere else) and loads the kept model again."""
    import subprocess
    import sys

    dev = dev_server(gpt.root)
    assert dev.call("Sampler/generate")["text"] == "v1"
    gpt.edit("model.py", "LOADS.append(1)", "LOADS.append(1)\n        self.scale = 3")
    gpt.edit("model.py", 'return "v1"', 'return "v%d" % self.scale')
    dev.wait_for("⚠ Sampler: kept 'gpt'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "rebuild", "Sampler", "--stale"],
        cwd=gpt.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rebuilt 'gpt'" in out.stdout, out.stdout
    assert dev.call("Sampler/generate")["text"] == "v3"
