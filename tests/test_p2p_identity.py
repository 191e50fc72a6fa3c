"""Node identities: saved keys stay private, reload identically, and genesis entries are checked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2p.identity import (
    CERT_FILE_NAME,
    KEY_FILE_NAME,
    IdentityError,
    NodeIdentity,
    PeerInfo,
    pem_to_der,
)


def test_saved_identity_reloads_with_the_same_certificate(tmp_path: Path) -> None:
    identity = NodeIdentity.generate("node1")
    identity.save(tmp_path)
    loaded = NodeIdentity.load(tmp_path)
    assert loaded.name == "node1"
    assert loaded.certificate_pem == identity.certificate_pem
    assert loaded.public_key_hex == identity.public_key_hex
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_certificate_is_a_function_of_name_and_key() -> None:
    identity = NodeIdentity.generate("node1")
    again = NodeIdentity.from_private_key("node1", identity.private_key)
    assert again.certificate_der == identity.certificate_der
    assert len(identity.public_key_hex) == 64


def test_key_never_appears_in_repr() -> None:
    identity = NodeIdentity.generate("node1")
    assert "PRIVATE" not in repr(identity)
    assert identity.public_key_hex in repr(identity)


def test_load_refuses_a_certificate_of_another_key(tmp_path: Path) -> None:
    NodeIdentity.generate("node1").save(tmp_path)
    other = NodeIdentity.generate("node1")
    (tmp_path / CERT_FILE_NAME).write_text(other.certificate_pem)
    with pytest.raises(IdentityError):
        NodeIdentity.load(tmp_path)


def test_load_of_a_missing_identity_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read node identity"):
        NodeIdentity.load(tmp_path / "nowhere")


def test_peer_info_must_carry_the_certificate_of_its_name() -> None:
    node2 = NodeIdentity.generate("node2")
    info = node2.peer_info("127.0.0.1", 7001)
    assert info.cert_der == pem_to_der(node2.certificate_pem)
    with pytest.raises(IdentityError):
        PeerInfo("node1", "127.0.0.1", 7001, node2.certificate_pem)
    with pytest.raises(IdentityError):
        PeerInfo("node2", "127.0.0.1", 70000, node2.certificate_pem)
    with pytest.raises(IdentityError):
        PeerInfo("node2", "127.0.0.1", 7001, "not a certificate")


def test_node_names_are_bounded() -> None:
    with pytest.raises(IdentityError):
        NodeIdentity.generate("")
    with pytest.raises(IdentityError):
        NodeIdentity.generate("n" * 65)
