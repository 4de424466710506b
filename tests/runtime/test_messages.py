"""Messages that say what to do, each against a real runtime (`slipstream serve` on loopback).

Top-level calls at import, endpoints not at module level, `example=` that does not fit the
signature, bad call arguments, spec warnings, `.map` with failing items, and the CLI's
`logs`/`status` with a wrong token, an unknown endpoint or no runtime.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest

from slipstream.protocol.errors import DeployError, MapError
from slipstream.spec.endpoint_spec import SpecError
from tests.conftest import write_project

# The README's tour without its `if __name__ == "__main__":` guard, as a user may paste it (with a stand-in model loader).
TOUR = """
from slipstream import endpoint, keep

def load_pipeline():
    return lambda prompt, num_inference_steps: type("Out", (), {"images": [prompt.upper()]})()

@endpoint(gpu="H100", workers=(0, 3), example={"paint": {"prompt": "a lighthouse at dusk"}})
class Painter:
    def setup(self):                      # once per worker, and again after each edit
        self.pipe = keep("dreamshaper-8", load_pipeline)   # ...but the model stays loaded

    def paint(self, prompt: str, steps: int = 25):
        return self.pipe(prompt, num_inference_steps=steps).images[0]

images = list(Painter().paint.map(["a fox", "a heron"]))  # fans out across workers, keeps order
print(Painter.last_call)
"""

FUNCTION_TOUR = """
from slipstream import endpoint

@endpoint
def greet(name: str) -> str:
    return "hello " + name

print(greet("world"))
"""


def _env(rt=None, token=None, url=None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    if rt is not None or url is not None:
        env["SLIPSTREAM_RUNTIME_URL"] = url or rt.url
        env["SLIPSTREAM_TOKEN"] = token if token is not None else rt.token
    return env


def _slipstream(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- top-level calls at import -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "call", "line"),
    [(TOUR, "Painter().paint.map(...)", 15), (FUNCTION_TOUR, "greet(...)", 8)],
    ids=["class", "function"],
)
def test_a_top_level_call_at_import_is_one_clear_line_under_slipstream_run(
    runtime, tmp_path, source, call, line
):
    root = write_project(tmp_path / "tour", {"tour.py": source})
    p = _slipstream("run", "tour.py", env=_env(runtime), cwd=root, timeout=120)
    assert p.returncode == 1, p.stderr
    msg = _one_line(p.stderr)
    assert f"(tour.py:{line})" in msg and call in msg, msg
    assert 'put top-level calls under `if __name__ == "__main__":`' in msg
    assert "UnknownEndpoint" not in msg and "no endpoint named" not in msg


def test_the_same_script_run_by_python_has_no_thread_pool_frames(runtime, tmp_path):
    root = write_project(tmp_path / "tour", {"tour.py": TOUR})
    p = subprocess.run(
        [sys.executable, "tour.py"],
        cwd=root,
        env=_env(runtime),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "slipstream.protocol.errors.DeployError: RuntimeError: Painter().paint.map(...)"
    ), p.stderr
    assert "concurrent/futures" not in p.stderr and "_base.py" not in p.stderr, p.stderr


# --- endpoints not at module level ---------------------------------------------------------

NESTED = """
from slipstream import endpoint

def make():
    @endpoint
    def inner(x):
        return x
    return inner

inner = make()
"""


def test_a_nested_endpoint_is_refused_where_it_is_written(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": NESTED})
    with pytest.raises(TypeError) as local:
        proj.module("app")
    assert "defined inside 'make'" in str(local.value) and "Move 'inner' to the top level" in str(
        local.value
    )
    with pytest.raises(DeployError) as deploy:
        proj.sync()
    assert deploy.value.file == "app.py" and deploy.value.line == 5, deploy.value
    assert "endpoints must be defined at module level" in deploy.value.message
    assert str(deploy.value).count("inner") <= 3 and "no endpoint named" not in str(deploy.value)


# --- example= against the signature ----------------------------------------------------------

BAD_EXAMPLE = """
from slipstream import endpoint

@endpoint(example={"nme": "x"})
def greet(name: str, times: int = 1) -> str:
    return name * times
"""


def test_an_example_that_does_not_fit_is_refused_at_import_and_at_deploy(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": BAD_EXAMPLE})
    with pytest.raises(SpecError) as local:
        proj.module("app")
    text = str(local.value)
    assert "greet() has no parameter 'nme' (it takes name, times)" in text
    assert "greet() needs 'name', which the example does not give" in text
    with pytest.raises(DeployError) as deploy:
        proj.sync()
    assert deploy.value.file == "app.py" and deploy.value.line == 4
    assert "has no parameter 'nme'" in deploy.value.message
    proj.write("app.py", BAD_EXAMPLE.replace('"nme"', '"name"'))
    assert [e["name"] for e in proj.sync().endpoints] == ["greet"]


# --- call arguments ---------------------------------------------------------------------------

CALLS = """
from slipstream import endpoint

@endpoint
def greet(name: str, times: int = 1) -> str:
    return name * times

@endpoint
def flaky(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd item {x}")
    return x * 2

@endpoint
class Shop:
    def price(self, item: str, qty: int = 1) -> float:
        return 1.5 * qty
"""


@pytest.fixture()
def calls(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": CALLS})
    return proj, proj.module("app")


def test_a_bad_call_names_every_bad_argument(calls):
    proj, app = calls
    with pytest.raises(TypeError) as exc:
        app.greet(nme="x", extra=2)
    text = str(exc.value)
    assert "greet(name: str, times: int = 1)" in text
    assert (
        "unexpected keyword arguments 'nme', 'extra'" in text
        and "missing required argument 'name'" in text
    )
    with pytest.raises(TypeError) as exc:
        app.Shop().price("a", 2, 3, item="b")
    text = str(exc.value)
    assert "Shop.price(item: str, qty: int = 1)" in text
    assert (
        "takes 2 positional arguments but 3 were given" in text
        and "multiple values for 'item'" in text
    )
    r = httpx.post(
        f"{proj.rt.url}/v1/endpoints/greet/call",
        json={"kwargs": {"nme": "x"}},
        headers={"Authorization": f"Bearer {proj.rt.token}"},
        timeout=60,
    )
    assert r.status_code == 422
    assert (
        "unexpected keyword argument 'nme'; missing required argument 'name'"
        in r.json()["error"]["message"]
    )


# --- .map with failing items ----------------------------------------------------------------


def test_map_keeps_the_other_results_and_names_each_failed_index(calls):
    _, app = calls
    with pytest.raises(MapError) as exc:
        list(app.flaky.map([0, 1, 2, 3, 4]))
    err = exc.value
    assert err.failed == [1, 3]
    assert err.results == [0, None, 4, None, 8]
    assert all(isinstance(e, ValueError) for e in err.errors.values())
    assert str(err.errors[3]) == "odd item 3"
    assert (
        "2 of 5 map items failed (item 1: ValueError: odd item 1; item 3: ValueError: odd item 3)"
        in str(err)
    )
    assert err.__cause__ is err.errors[1], (
        "the first failure (with its remote traceback) is the cause"
    )
    assert app.flaky.last_call.calls == 5
    assert list(app.flaky.map([0, 2])) == [0, 4], "a map without failures yields every result"


def test_a_map_error_says_a_repeated_failure_once_with_its_items():
    errors = {i: ValueError("model not loaded") for i in range(8)} | {9: KeyError("size")}
    text = str(MapError(errors, [None] * 10))
    assert text.count("model not loaded") == 1, text
    assert "items 0, 1, 2, 3, 4 and 3 more: ValueError: model not loaded" in text
    assert "item 9: KeyError: 'size'" in text and text.startswith("9 of 10 map items failed")


# --- spec warnings ------------------------------------------------------------------------------

LEAKY = """
from slipstream import endpoint

@endpoint(env={"HF_TOKEN": "hf_abc", "MODE": "fast"})
def leaky() -> str:
    import os
    return os.environ["MODE"]
"""


def test_a_spec_warning_is_shown_once_by_the_sdk_and_comes_back_from_the_deploy(
    runtime, project_factory
):
    from slipstream.endpoint import SpecWarning

    proj = project_factory(runtime, {"app.py": LEAKY})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = proj.module("app")
        proj.module("app")  # imported again (a reload): not shown again
    shown = [w for w in caught if issubclass(w.category, SpecWarning)]
    assert len(shown) == 1, [str(w.message) for w in caught]
    assert "endpoint 'leaky': env['HF_TOKEN'] looks like a secret" in str(shown[0].message)
    assert shown[0].filename.endswith("app.py") and shown[0].lineno == 4, (
        "at the decorator in the user's file"
    )
    assert app.leaky() == "fast", "a warning, not a refusal"
    [ep] = proj.sync().endpoints
    assert any("HF_TOKEN" in w and "looks like a secret" in w for w in ep["warnings"])


# --- the CLI: logs and status ------------------------------------------------------------------


def test_status_and_logs_with_a_wrong_token_are_one_line_and_exit_1(runtime):
    for args in (["status"], ["logs"]):
        p = _slipstream(*args, env=_env(runtime, token="not-the-token"))
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        msg = _one_line(p.stderr)
        assert "refused the token" in msg and "SLIPSTREAM_TOKEN" in msg, msg


def test_logs_of_an_unknown_endpoint_say_which_exist(runtime, calls):
    calls[0].sync()
    p = _slipstream("logs", "no_such_endpoint", env=_env(runtime), timeout=30)
    assert p.returncode == 1
    msg = _one_line(p.stderr)
    assert "no endpoint named 'no_such_endpoint'" in msg and "greet" in msg, msg


def test_status_and_logs_without_a_runtime_answering_are_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    for args in (["status"], ["logs"], ["logs", "greet"]):
        p = _slipstream(*args, env=_env(url=url, token="t"), cwd=tmp_path)
        assert p.returncode == 1, (args, p.stderr)
        msg = _one_line(p.stderr)
        assert f"no Slipstream runtime answered at {url}" in msg, msg


# --- a result that cannot travel back ---------------------------------------------------------

UNPICKLABLE = """
import threading
from slipstream import endpoint

@endpoint
def lock():
    return threading.Lock()

@endpoint
class Holder:
    def handle(self):
        import socket
        return socket.socket()
"""


def test_a_result_that_cannot_be_sent_back_says_which_endpoint_returned_what(
    runtime, project_factory
):
    app = project_factory(runtime, {"holder.py": UNPICKLABLE}).module("holder")
    with pytest.raises(TypeError) as exc:
        app.lock()
    text = str(exc.value)
    assert "lock returned a _thread.lock that cannot be sent back" in text, text
    assert "return plain data" in text and "cloudpickle" not in str(exc.value.__cause__)
    with pytest.raises(
        TypeError, match=r"Holder\.handle returned a socket\.socket that cannot be sent back"
    ):
        app.Holder().handle()
    assert app.lock.local() is not None, "the endpoint itself is fine"
