"""One loopback check (protocol/hosts.py) for the SDK, `slipstream serve` and the Ray backend:
only loopback literals and "localhost" count, never a name that merely starts with "127."."""

from __future__ import annotations

import pytest

from slipstream.protocol.hosts import is_loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.5.6.7", "::1", "[::1]"])
def test_loopback_literals_are_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1.nip.io", "127.example.com", "10.0.0.2", "0.0.0.0", "::", "gpu-box", ""]
)
def test_names_and_other_addresses_are_not(host):
    assert not is_loopback(host)


def test_the_ray_backend_warns_about_a_loopback_runtime_url_and_only_about_one(capsys):
    """A runtime on loopback cannot serve code to other Ray nodes: said once. A name such as
    127.0.0.1.nip.io is not a loopback literal (the backend's own check took any "127." prefix)."""
    ray_backend = pytest.importorskip(
        "slipstream.server.ray_backend", reason="the Ray backend needs ray"
    )
    backend = ray_backend.RayBackend.__new__(
        ray_backend.RayBackend
    )  # no cluster: only its URL rule
    backend.remote, backend.worker_host, backend._warned_url = True, "10.0.0.2", False
    assert backend._reachable("http://127.0.0.1.nip.io:8000") == "http://127.0.0.1.nip.io:8000"
    assert "listens on" not in capsys.readouterr().err
    backend._reachable("http://127.0.0.1:8000")
    assert "the runtime listens on 127.0.0.1 only" in capsys.readouterr().err
