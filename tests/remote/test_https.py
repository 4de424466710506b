"""HTTPS runtimes: `slipstream serve --tls-cert/--tls-key`, certificate verification, the
refusal to send a token in clear text, and a real nginx terminating TLS on one port in front
of a runtime (calls, streaming, 100 MB arguments, logs, sync through that port alone).

The test CA and certificates are made here with the openssl command line tool."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningRuntime, remove_project, start_runtime, write_project

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_HOST = "127.0.0.2"  # the proxy's address: the runtime binds 127.0.0.1 only, as a remote one binds its own


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        cwd=d,
    )
    return d / f"{name}.pem", d / f"{name}.key"


def make_cert(d: Path, ca: tuple[Path, Path], name: str, sans: str) -> tuple[Path, Path]:
    (d / f"{name}.ext").write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=d,
    )
    return d / f"{name}.pem", d / f"{name}.key"


class PKI:
    def __init__(self, d: Path) -> None:
        self.ca = make_ca(d, "test-ca")
        self.cert, self.key = make_cert(
            d, self.ca, "runtime", f"DNS:localhost,IP:127.0.0.1,IP:{PROXY_HOST}"
        )
        self.other_ca = make_ca(d, "other-ca")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is needed to make the test CA (apt-get install openssl)")
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_runtime(pki: PKI) -> Iterator[RunningRuntime]:
    rt = start_runtime("--gpu-fallback", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    yield rt
    rt.stop()


APP = """
    import os, time
    from slipstream import endpoint

    @endpoint
    def noop():
        return "ok"

    @endpoint
    def echo(data: bytes) -> bytes:
        return data

    @endpoint
    def shout(marker: str) -> str:
        print(marker, flush=True)
        return marker.upper()

    @endpoint
    def items(gate: str):
        yield 1
        deadline = time.monotonic() + 30
        while not os.path.exists(gate):  # the test opens the gate once the first item reached it
            if time.monotonic() > deadline:
                raise TimeoutError("the first item never reached the caller")
            time.sleep(0.01)
        yield 2
"""


def _client(url: str, token: str, ca: Path | None):
    from slipstream.sdk.client import RuntimeClient

    return RuntimeClient(url, token, ca_bundle=str(ca) if ca else None)


def _exercise(client, root: Path, tmp: Path) -> dict:
    """Sync, a call, streaming (the first item arrives before the generator ends), a 100 MB
    argument both ways, and the call's log line on the live log. Returns what it saw."""
    res = client.sync(root)
    assert sorted(e["name"] for e in res.endpoints) == ["echo", "items", "noop", "shout"]
    out = client.call("noop", None, (), {})
    assert out.error is None and out.value == "ok"

    gate = tmp / f"gate-{time.monotonic_ns()}"
    got = []
    for kind, value in client.stream("items", None, (str(gate),), {}, timeout=60):
        if kind == "item":
            got.append(value)
            gate.touch()  # only now may the generator go on: a buffering proxy would hang here
        else:
            assert value.error is None, value.error
    assert got == [1, 2]

    blob = os.urandom(100 * 1024 * 1024)
    started = time.perf_counter()
    out = client.call("echo", None, (blob,), {}, timeout=120)
    big_s = time.perf_counter() - started
    assert out.error is None and out.value == blob
    del blob, out

    marker = f"marker-{time.monotonic_ns()}"
    stop = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for e in client.logs(backlog=0, stop=stop):
            if marker in str(e.get("text", "")):
                seen.append(e["text"])
                stop.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while (
        not seen and time.monotonic() < deadline
    ):  # the SSE stream may subscribe after the first call
        assert client.call("shout", None, (marker,), {}).value == marker.upper()
        stop.wait(0.5)
    stop.set()
    t.join(10)
    assert seen, "the call's log line never came through the live log"
    return {"big_s": big_s}


def test_tls_runtime_serves_https_and_a_tls_data_channel(
    tls_runtime: RunningRuntime, pki: PKI, tmp_path: Path
) -> None:
    assert tls_runtime.url.startswith("https://127.0.0.1:")
    root = write_project(tmp_path / "app", {"app.py": APP})
    client = _client(tls_runtime.url, tls_runtime.token, pki.ca[0])
    try:
        assert client.health()["tls"] is True
        _exercise(client, root, tmp_path)
        data = client._data()
        assert data is not None, (
            "the SDK should use the TLS data channel of a runtime it reaches directly"
        )
        port = data.addr[1]
    finally:
        if client.project:
            client._request("DELETE", f"/v1/projects/{client.project}")
        client.close()

    # the data channel speaks TLS with the runtime's certificate, never plain text
    ctx = ssl.create_default_context(cafile=str(pki.ca[0]))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        assert s.getpeercert()["subject"] == ((("commonName", "runtime"),),)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            b"\x00" * 64
        )  # a plain-text request: the handshake fails and the runtime hangs up
        raw.settimeout(5)
        try:
            while raw.recv(4096):  # at most a TLS alert, then the runtime hangs up
                pass
        except ConnectionResetError:
            pass
    # and the HTTP port answers no plain HTTP
    import httpx

    with pytest.raises(httpx.HTTPError):
        httpx.get(
            tls_runtime.url.replace("https:", "http:") + "/health", timeout=5
        ).raise_for_status()


def test_an_untrusted_certificate_is_refused_with_what_to_do(
    tls_runtime: RunningRuntime, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipstream.protocol.errors import SlipstreamError

    monkeypatch.delenv("SLIPSTREAM_CA_BUNDLE", raising=False)
    monkeypatch.chdir(pki.cert.parent)  # no slipstream.toml with a ca_bundle here
    for ca in (None, pki.other_ca[0]):  # the system store, then a CA that did not sign it
        client = _client(tls_runtime.url, tls_runtime.token, ca)
        with pytest.raises(SlipstreamError, match="not trusted.*SLIPSTREAM_CA_BUNDLE"):
            client.health()
        client.close()
    monkeypatch.setenv("SLIPSTREAM_CA_BUNDLE", str(pki.ca[0]))
    client = _client(tls_runtime.url, tls_runtime.token, None)
    assert client.health()["ok"] is True
    client.close()


def test_ca_bundle_from_slipstream_toml(
    tls_runtime: RunningRuntime, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIPSTREAM_CA_BUNDLE", raising=False)
    shutil.copy(pki.ca[0], tmp_path / "ca.pem")
    (tmp_path / "slipstream.toml").write_text('[runtime]\nca_bundle = "ca.pem"\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    # the CLI, as a user runs it, from inside the project
    env = {
        **os.environ,
        "SLIPSTREAM_RUNTIME_URL": tls_runtime.url,
        "SLIPSTREAM_TOKEN": tls_runtime.token,
    }
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    (tmp_path / "slipstream.toml").write_text('[runtime]\nca_bundle = "missing.pem"\n')
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0 and "missing.pem" in p.stderr and "is not a file" in p.stderr


def test_a_token_is_never_sent_in_clear_text_to_another_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from slipstream.protocol.errors import SlipstreamError
    from slipstream.sdk.client import RuntimeClient, _warned_insecure

    monkeypatch.delenv("SLIPSTREAM_ALLOW_INSECURE", raising=False)
    with pytest.raises(SlipstreamError, match="clear text.*https://.*SLIPSTREAM_ALLOW_INSECURE=1"):
        RuntimeClient("http://gpu-box.example:8765", "secret-token")
    with pytest.raises(SlipstreamError, match="clear text"):
        RuntimeClient("http://10.0.0.7:8765", "secret-token")
    # loopback, and a runtime's own URL when it binds every address (what its workers get)
    for ok in (
        "http://127.0.0.1:8765",
        "http://localhost:1",
        "http://[::1]:2",
        "http://0.0.0.0:8765",
        "https://gpu-box.example",
    ):
        RuntimeClient(ok, "secret-token").close()
    assert capsys.readouterr().err == ""
    # a runtime serving plain HTTP on a LAN address lets its own workers call it back, only it
    monkeypatch.setenv("SLIPSTREAM_ALLOW_INSECURE", "runtime")
    monkeypatch.setenv("SLIPSTREAM_RUNTIME_URL", "http://10.0.0.7:8765")
    RuntimeClient("http://10.0.0.7:8765", "secret-token").close()
    with pytest.raises(SlipstreamError, match="clear text"):
        RuntimeClient("http://10.0.0.8:8765", "secret-token")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SLIPSTREAM_ALLOW_INSECURE", "1")
    _warned_insecure.discard("http://10.0.0.7:8765")
    RuntimeClient("http://10.0.0.7:8765", "secret-token").close()
    RuntimeClient("http://10.0.0.7:8765", "secret-token").close()
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "CLEAR TEXT" in err and "secret-token" not in err


def test_serve_refuses_a_half_or_broken_tls_setup(pki: PKI, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "slipstream", "serve", "--port", "0", "--temp-store"]
    p = subprocess.run(
        [*base, "--tls-cert", str(pki.cert)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "--tls-key" in p.stderr
    p = subprocess.run(
        [*base, "--tls-cert", str(pki.cert), "--tls-key", str(pki.other_ca[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "cannot serve HTTPS" in p.stderr


# --- nginx in front: one HTTPS port ------------------------------------------------------

NGINX_CONF = """
    worker_processes 1;
    pid {d}/nginx.pid;
    error_log {d}/error.log warn;
    events {{ worker_connections 256; }}
    http {{
        access_log off;
        client_body_temp_path {d}/body;
        proxy_temp_path {d}/proxy;
        fastcgi_temp_path {d}/fastcgi;
        uwsgi_temp_path {d}/uwsgi;
        scgi_temp_path {d}/scgi;
        server {{
            listen {host}:{port} ssl;
            ssl_certificate {cert};
            ssl_certificate_key {key};
            client_max_body_size 0;
            location / {{
                proxy_pass {upstream};
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_buffering off;
                proxy_request_buffering off;
                proxy_read_timeout 600s;
                proxy_send_timeout 600s;
                proxy_ssl_verify off;
            }}
        }}
    }}
"""


class Nginx:
    def __init__(self, d: Path, upstream: str, pki: PKI) -> None:
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        with socket.socket() as s:
            s.bind((PROXY_HOST, 0))
            self.port = s.getsockname()[1]
        (d / "nginx.conf").write_text(
            textwrap.dedent(NGINX_CONF).format(
                d=d, host=PROXY_HOST, port=self.port, cert=pki.cert, key=pki.key, upstream=upstream
            )
        )
        self.d = d
        self.proc = subprocess.Popen(
            [
                NGINX,
                "-p",
                str(d),
                "-c",
                str(d / "nginx.conf"),
                "-e",
                str(d / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((PROXY_HOST, self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        self.url = f"https://{PROXY_HOST}:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("upstream", ["plain", "tls"])
def test_behind_nginx_everything_goes_through_one_https_port(
    upstream: str, pki: PKI, tmp_path: Path
) -> None:
    """nginx terminates TLS on one port (like RunPod's proxy): sync, calls, streaming, 100 MB
    both ways and the live log all work through it, and the SDK notices at once that the data
    channel cannot be reached (a plain one behind https:// is never tried; a TLS one on a port
    the proxy does not forward is refused) and stays on HTTP."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is needed (scripts/install-test-hosts installs it)")
    args = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key)) if upstream == "tls" else ()
    rt = start_runtime("--gpu-fallback", *args)
    proxy = None
    root = write_project(tmp_path / "app", {"app.py": APP})
    try:
        proxy = Nginx(tmp_path / "nginx", rt.url, pki)
        client = _client(proxy.url, rt.token, pki.ca[0])
        started = time.perf_counter()
        assert client._data() is None, (
            "the SDK must not use a data channel it cannot reach through the proxy"
        )
        assert time.perf_counter() - started < 3.0
        assert client._data_checked  # remembered: no second probe
        _exercise(client, root, tmp_path)
        assert client._data_client is None
        client.close()
    finally:
        if proxy is not None:
            proxy.stop()
        remove_project(rt, root)
        rt.stop()
