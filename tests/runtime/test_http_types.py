"""HTTP calls get the parameters' annotated types, and the OpenAPI document shows them.

Against a real runtime (its JSON call route) and a real `slipstream dev` in front of it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import write_project

APP = """
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, TypedDict

from pydantic import BaseModel

from slipstream import endpoint


class Mode(enum.Enum):
    FAST = "fast"
    GOOD = "good"


@dataclass
class Size:
    w: int
    h: int = 64


@dataclass
class Request:
    prompt: str
    size: Size
    mode: Mode = Mode.FAST
    extras: list[Size] = field(default_factory=list)


class Style(BaseModel):
    name: str
    strength: float = 0.5


class Seed(TypedDict):
    value: int


@dataclass
class Result:
    prompt: str
    area: int
    mode: Mode


@endpoint
def render(req: Request, styles: list[Style], seeds: dict[str, Seed], fallback: Optional[Mode] = None) -> dict:
    return {
        "req": type(req).__name__,
        "size": type(req.size).__name__,
        "area": req.size.w * req.size.h,
        "mode": type(req.mode).__name__ + "." + req.mode.name,
        "extras": [type(e).__name__ for e in req.extras],
        "styles": [[type(s).__name__, s.strength] for s in styles],
        "seeds": {k: [type(v).__name__, v["value"]] for k, v in seeds.items()},
        "fallback": None if fallback is None else fallback.name,
    }


@endpoint
def make(req: Request) -> Result:
    return Result(req.prompt, req.size.w * req.size.h, req.mode)


@endpoint
def styled(style: Style) -> Style:
    return Style(name=style.name.upper(), strength=style.strength * 2)


@endpoint
class Box:
    def fit(self, size: Size) -> int:
        return size.w * size.h


@endpoint(env={"API_KEY": "k-123"})
def leaky() -> str:
    return "x"
"""

BODY = {
    "req": {"prompt": "a fox", "size": {"w": 8, "h": 4}, "mode": "good", "extras": [{"w": 1}]},
    "styles": [{"name": "ink"}, {"name": "oil", "strength": 2}],
    "seeds": {"a": {"value": 7}},
    "fallback": "fast",
}


@pytest.fixture(scope="module")
def typed(runtime, tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("typed") / "proj", {"app.py": APP})
    c = runtime.client()
    try:
        res = c.sync(root)
    finally:
        c.close()
    return runtime, root, res


def _call(rt, name, kwargs, method=None, args=()):
    return httpx.post(
        f"{rt.url}/v1/endpoints/{name}/call",
        json={"args": list(args), "kwargs": kwargs},
        params={"method": method} if method else None,
        headers={"Authorization": f"Bearer {rt.token}"},
        timeout=60,
    )


def test_json_arguments_arrive_as_their_annotated_types(typed):
    rt, _, _ = typed
    r = _call(rt, "render", BODY)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {
        "req": "Request",
        "size": "Size",
        "area": 32,
        "mode": "Mode.GOOD",
        "extras": ["Size"],
        "styles": [["Style", 0.5], ["Style", 2.0]],
        "seeds": {"a": ["dict", 7]},
        "fallback": "FAST",
    }
    r = _call(rt, "Box", {"size": {"w": 3, "h": 5}}, method="fit")
    assert r.status_code == 200 and r.json()["result"] == 15, r.text
    positional = _call(
        rt, "render", {"fallback": "good"}, args=[BODY["req"], BODY["styles"], BODY["seeds"]]
    )
    assert positional.status_code == 200, positional.text
    assert (
        positional.json()["result"]["size"] == "Size"
        and positional.json()["result"]["fallback"] == "GOOD"
    )


def test_dataclass_and_pydantic_results_come_back_as_json(typed):
    rt, _, _ = typed
    r = _call(rt, "make", {"req": {"prompt": "p", "size": {"w": 2, "h": 3}, "mode": "good"}})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"prompt": "p", "area": 6, "mode": "good"}
    r = _call(rt, "styled", {"style": {"name": "ink", "strength": 0.25}})
    assert r.status_code == 200 and r.json()["result"] == {"name": "INK", "strength": 0.5}, r.text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({**BODY, "req": {**BODY["req"], "size": {"w": "wide"}}}, "req.size.w"),
        ({**BODY, "req": {**BODY["req"], "mode": "slow"}}, "req.mode"),
        ({**BODY, "styles": [{"name": "ink"}, {"strength": 1}]}, "styles[1].name"),
        ({**BODY, "seeds": {"a": {"value": "x"}}}, "seeds.a.value"),
    ],
)
def test_a_body_that_does_not_fit_is_422_naming_the_field(typed, kwargs, field):
    rt, _, _ = typed
    r = _call(rt, "render", kwargs)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"], r.json()["error"]["message"]


def test_the_sdk_still_passes_objects_untouched(typed):
    """Binary (SDK) calls carry the objects themselves; only JSON is converted."""
    from types import SimpleNamespace

    rt, _, _ = typed
    c = rt.client()
    try:
        out = c.call("Box", "fit", (), {"size": SimpleNamespace(w=2, h=2)})
    finally:
        c.close()
    assert out.error is None and out.value == 4


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dev(typed, tmp_path):
    rt, root, _ = typed
    port = _port()
    log = tmp_path / "dev.log"
    env = {**os.environ, "SLIPSTREAM_TOKEN": rt.token}
    env.pop("SLIPSTREAM_RUNTIME_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slipstream",
            "dev",
            str(root),
            "--port",
            str(port),
            "--runtime",
            rt.url,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while "serving" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    while True:  # uvicorn binds right after the line is printed
        try:
            httpx.get(url + "/openapi.json")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    yield url, log
    proc.terminate()
    proc.wait(20)


def test_dev_converts_too_and_its_openapi_shows_the_types(dev):
    dev, _ = dev
    r = httpx.post(dev + "/render", json=BODY, timeout=60)
    assert r.status_code == 200 and r.json()["result"]["size"] == "Size", r.text
    bad = httpx.post(dev + "/render", json={**BODY, "req": {"prompt": "x"}}, timeout=60)
    assert bad.status_code == 422 and "req.size" in bad.json()["error"]["message"], bad.text

    doc = httpx.get(dev + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"Request", "Size", "Mode", "Style", "Seed"} <= set(schemas)
    assert schemas["Mode"]["enum"] == ["fast", "good"]
    assert schemas["Size"]["properties"]["w"]["type"] == "integer" and schemas["Size"][
        "required"
    ] == ["w"]
    assert schemas["Request"]["properties"]["size"] == {"$ref": "#/components/schemas/Size"}
    body = doc["paths"]["/render"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = body["properties"]
    assert props["req"] == {"$ref": "#/components/schemas/Request"}
    assert props["styles"] == {"type": "array", "items": {"$ref": "#/components/schemas/Style"}}
    assert props["seeds"]["additionalProperties"] == {"$ref": "#/components/schemas/Seed"}
    assert body["required"] == ["req", "styles", "seeds"]
    fit = doc["paths"]["/Box/fit"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert fit["properties"]["size"] == {"$ref": "#/components/schemas/Size"}
    for ref in _refs(doc):  # every reference resolves inside the document
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_dev_shows_spec_warnings_once(dev, typed):
    _, log = dev
    _, root, res = typed
    [leaky] = [e for e in res.endpoints if e["name"] == "leaky"]
    assert any("env['API_KEY'] looks like a secret" in w for w in leaky["warnings"]), (
        "the deploy reply carries them"
    )
    (root / "app.py").write_text(APP + "\n# a save\n")
    deadline = time.monotonic() + 30
    while "↻" not in log.read_text():  # the save went live
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    lines = [line for line in log.read_text().splitlines() if line.startswith("⚠")]
    assert len(lines) == 1, log.read_text()
    assert lines[0].startswith("⚠ endpoint 'leaky' (app.py:")
    assert (
        "env['API_KEY'] looks like a secret" in lines[0] and "Keep secrets out of code" in lines[0]
    )
