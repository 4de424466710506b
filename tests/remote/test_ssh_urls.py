"""ssh:// runtime addresses: what is accepted, and what a wrong one is told."""

from __future__ import annotations

import pytest

from slipstream.sdk.config import runtime_from_env
from slipstream.sdk.sshlink import SshError, parse_ssh_url


def test_ssh_addresses_name_user_host_and_port_as_written() -> None:
    t = parse_ssh_url("ssh://bob@Gpu-Box:2222")
    assert (t.user, t.host, t.port) == ("bob", "Gpu-Box", 2222)  # an alias keeps its case
    assert parse_ssh_url("ssh://mycluster").url == "ssh://mycluster"
    assert (
        parse_ssh_url("ubuntu@10.0.0.7").url == "ssh://ubuntu@10.0.0.7"
    )  # slipstream connect ubuntu@host
    assert (
        parse_ssh_url("ssh://a").key != parse_ssh_url("ssh://b").key
    )  # one control socket per host


@pytest.mark.parametrize(
    "bad", ["ssh://", "ssh://host/path", "ssh://host:notaport", "ssh://u:pw@host"]
)
def test_a_wrong_ssh_address_says_how_to_write_it(bad: str) -> None:
    with pytest.raises(SshError, match=r"ssh://\[user@\]host\[:port\]"):
        parse_ssh_url(bad)


def test_the_configured_runtime_accepts_ssh_and_refuses_unknown_schemes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIPSTREAM_RUNTIME_URL", "ssh://gpu-box")
    monkeypatch.delenv("SLIPSTREAM_TOKEN", raising=False)
    assert runtime_from_env() == ("ssh://gpu-box", "")
    monkeypatch.setenv("SLIPSTREAM_RUNTIME_URL", "gpu-box:8765")
    with pytest.raises(ValueError, match="ssh://"):
        runtime_from_env()
