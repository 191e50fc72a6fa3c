"""Hello and pin checks: the certificate decides who a peer is; the hello must agree with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.frame import Frame
from p2p.handshake import (
    HELLO_CHANNEL,
    PROTOCOL_VERSION,
    Hello,
    PinSet,
    RefusalCode,
    check_hello,
    dials,
)
from p2p.identity import NodeIdentity

CHAIN = "keiretsu-test"
NODES = [NodeIdentity.generate(name) for name in ("node1", "node2", "node3")]
OUTSIDER = NodeIdentity.generate("node2")  # same name as a member, different key
PINS = PinSet([node.peer_info("127.0.0.1", 7000 + i) for i, node in enumerate(NODES)])


def _hello(name: str, chain: str = CHAIN, version: int = PROTOCOL_VERSION) -> Hello:
    return Hello(version, name, chain)


def test_a_member_naming_itself_is_accepted() -> None:
    node2 = NODES[1]
    assert check_hello(_hello("node2"), node2.certificate_der, None, CHAIN, PINS) is None
    assert check_hello(_hello("node2"), node2.certificate_der, "node2", CHAIN, PINS) is None


def test_a_member_claiming_another_members_name_is_refused() -> None:
    node3 = NODES[2]
    refusal = check_hello(_hello("node2"), node3.certificate_der, None, CHAIN, PINS)
    assert refusal is RefusalCode.NAME_MISMATCH


def test_a_certificate_not_in_genesis_is_refused_even_with_a_member_name() -> None:
    refusal = check_hello(_hello("node2"), OUTSIDER.certificate_der, None, CHAIN, PINS)
    assert refusal is RefusalCode.CERT_NOT_PINNED


def test_the_node_we_dialled_must_be_the_one_answering() -> None:
    node3 = NODES[2]
    refusal = check_hello(_hello("node3"), node3.certificate_der, "node2", CHAIN, PINS)
    assert refusal is RefusalCode.NAME_MISMATCH


def test_another_chain_or_version_is_refused() -> None:
    der = NODES[1].certificate_der
    assert check_hello(_hello("node2", "other"), der, None, CHAIN, PINS) is (
        RefusalCode.CHAIN_MISMATCH
    )
    assert check_hello(_hello("node2", version=99), der, None, CHAIN, PINS) is (
        RefusalCode.VERSION_MISMATCH
    )
    assert check_hello(None, der, None, CHAIN, PINS) is RefusalCode.BAD_HELLO


def test_hello_round_trips_through_its_frame() -> None:
    hello = _hello("node1")
    assert Hello.from_frame(hello.to_frame()) == hello
    assert Hello.from_frame(Frame("raft", hello.to_frame().payload)) is None


@settings(deadline=None)  # timing under a loaded CI box is not the property
@given(st.binary(max_size=200))
def test_any_hello_payload_decodes_or_is_none(payload: bytes) -> None:
    hello = Hello.from_frame(Frame(HELLO_CHANNEL, payload))
    assert hello is None or isinstance(hello, Hello)


def test_exactly_one_side_of_each_pair_dials() -> None:
    names = [node.name for node in NODES]
    for a in names:
        for b in names:
            if a != b:
                assert dials(a, b) != dials(b, a)
