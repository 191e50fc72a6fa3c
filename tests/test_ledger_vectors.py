"""docs/vectors.json, the test vectors of docs/PROTOCOL.md, checked the way a client would.

Each vector gives inputs and expected bytes; the test rebuilds the bytes from the inputs with
the ledger's code and compares. Regenerate (only when the protocol changes on purpose) with
`python -m tests.test_ledger_vectors --rewrite`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ledger import codec
from ledger.block import BlockHeader
from ledger.executor import state_hash_after
from ledger.keys import KeyPair, address_bytes, address_of, parse_address
from ledger.merkle import merkle_proof, merkle_root, verify_proof
from ledger.tx import TxBody, check_stateless, sign, signing_message, tx_id_of

VECTORS_PATH = Path(__file__).resolve().parent.parent / "docs" / "vectors.json"


# ---------------------------------------------------------------- typed JSON values


def from_typed(typed: dict[str, Any]) -> Any:
    """A value from the vectors' typed JSON form: {"int": 5}, {"bin": "00ff"}, {"map": [[k, v]]}..."""
    (kind, payload), = typed.items()
    if kind == "nil":
        return None
    if kind in ("bool", "int", "str"):
        return payload
    if kind == "bin":
        return bytes.fromhex(payload)
    if kind == "array":
        return [from_typed(item) for item in payload]
    if kind == "map":
        return {key: from_typed(item) for key, item in payload}
    raise ValueError(f"unknown typed value {kind}")


def to_typed(value: Any) -> dict[str, Any]:
    if value is None:
        return {"nil": None}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, (list, tuple)):
        return {"array": [to_typed(item) for item in value]}
    # maps are listed in a deliberately unsorted order: the encoder must sort them
    return {"map": [[key, to_typed(value[key])] for key in sorted(value, reverse=True)]}


# ---------------------------------------------------------------- generation


CODEC_VALUES: list[Any] = [
    None, False, True, 0, 127, 128, 255, 256, 65_535, 65_536, 2**32, 2**64 - 1, -1, -32, -33, -128, -129,
    -(2**63), "", "a", "€", "x" * 31, "x" * 32, b"", b"\x00\xff", [], [1, [2, [3]]], {"b": 1, "a": 2, "B": 3},
    {"z": {"y": [], "x": None}, "": b"\x01"},
]
SEED_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
COUNTERPARTY_SEED_HEX = "ff" * 32
CHAIN_ID = "keiretsu-vectors"


def generate() -> dict[str, Any]:
    key = KeyPair(bytes.fromhex(SEED_HEX))
    other = KeyPair(bytes.fromhex(COUNTERPARTY_SEED_HEX))
    args = {"currency": "EUR", "to": other.address, "amount": 125_000}
    body = TxBody(CHAIN_ID, "cash", "transfer", args, 42, 1_700_000_600_000, (key.public_key,))
    tx = sign(body, [key])
    two = sign(TxBody(CHAIN_ID, "settlement", "settle", {"trade": b"\x07" * 32}, 7, 1_700_000_600_000,
                      (key.public_key, other.public_key)), [key, other])
    leaves = [tx.raw, b"second", b"third"]
    header = BlockHeader(CHAIN_ID, 5, b"\x11" * 32, 1_700_000_000_123, merkle_root(leaves), b"\x22" * 32,
                         b"\x33" * 32, 9, 2)
    writes = {b"bal\x1fEUR\x1f" + other.address.encode(): codec.encode([125_000, 0]), b"old\x1fkey": None}
    return {
        "about": "Test vectors of docs/PROTOCOL.md. All bytes are lowercase hex. Typed values: "
                 "{nil|bool|int|str: v}, {bin: hex}, {array: [...]}, {map: [[key, value], ...]}.",
        "codec": [{"value": to_typed(v), "hex": codec.encode(v).hex()} for v in CODEC_VALUES],
        "codec_rejects": [
            {"hex": "82a162 01a16102".replace(" ", ""), "why": "map keys not in sorted order"},
            {"hex": "cc05", "why": "5 not in its smallest form (positive fixint)"},
            {"hex": "d901" + "61", "why": "str8 for a 1-byte string (fixstr is smaller)"},
            {"hex": "cb3ff0000000000000", "why": "float64 (floats are not allowed)"},
            {"hex": "d40100", "why": "extension type"},
            {"hex": "0100", "why": "trailing bytes"},
            {"hex": "82a16101a16102", "why": "the same key twice"},
            {"hex": "810102", "why": "map key not a string"},
        ],
        "key": {
            "seed": SEED_HEX,
            "public_key": key.public_key.hex(),
            "address_bytes": address_bytes(key.public_key).hex(),
            "address": key.address,
        },
        "counterparty": {"seed": COUNTERPARTY_SEED_HEX, "public_key": other.public_key.hex(),
                         "address": other.address},
        "address_typos_rejected": [key.address[:5] + ("b" if key.address[5] != "b" else "c") + key.address[6:],
                                   key.address.upper(), key.address[:-1]],
        "transaction": {
            "body": {"version": 1, "chain_id": CHAIN_ID, "contract": "cash", "method": "transfer",
                     "args": to_typed(args), "nonce": 42, "expires_at_ms": 1_700_000_600_000,
                     "signers": [key.public_key.hex()]},
            "body_hex": tx.body_bytes.hex(),
            "tx_id": tx.tx_id.hex(),
            "signing_message": signing_message(CHAIN_ID, tx.body_bytes).hex(),
            "signatures": [s.hex() for s in tx.signatures],
            "signed_hex": tx.raw.hex(),
        },
        "two_signers": {
            "about": "a body with two signers and its two signatures, in signer order; the call only shows "
                     "the encoding (a node answers UNKNOWN_METHOD: a real DvP is settlement.dvp)",
            "body": {"version": 1, "chain_id": CHAIN_ID, "contract": "settlement", "method": "settle",
                     "args": to_typed({"trade": b"\x07" * 32}), "nonce": 7, "expires_at_ms": 1_700_000_600_000,
                     "signers": [key.public_key.hex(), other.public_key.hex()]},
            "body_hex": two.body_bytes.hex(),
            "signed_hex": two.raw.hex(), "tx_id": two.tx_id.hex(),
            "signers": [key.public_key.hex(), other.public_key.hex()],
        },
        "merkle": {
            "leaves": [leaf.hex() for leaf in leaves],
            "root": merkle_root(leaves).hex(),
            "proofs": [{"index": i, "path": [{"left": left, "hash": h.hex()}  # as the API returns them
                                            for left, h in merkle_proof(leaves, i)]} for i in range(3)],
            "empty_root": merkle_root([]).hex(),
        },
        "block_header": {
            "fields": {"chain_id": header.chain_id, "height": header.height, "prev_hash": header.prev_hash.hex(),
                       "time_ms": header.time_ms, "tx_root": header.tx_root.hex(),
                       "results_root": header.results_root.hex(), "state_hash": header.state_hash.hex(),
                       "raft_index": header.raft_index, "raft_term": header.raft_term},
            "header_hex": codec.encode(header.to_wire()).hex(),
            "block_hash": header.hash().hex(),
        },
        "state_hash": {
            "prev_state_hash": ("44" * 32), "height": 5,
            "writes": [[k.hex(), None if v is None else v.hex()] for k, v in writes.items()],
            "state_hash": state_hash_after(b"\x44" * 32, 5, writes).hex(),
        },
    }


# ---------------------------------------------------------------- checks


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text())


def test_the_vectors_file_matches_what_this_build_produces(vectors):
    assert vectors == generate(), "protocol bytes changed: rewrite docs/vectors.json only if intended"


def test_codec_vectors(vectors):
    for case in vectors["codec"]:
        value = from_typed(case["value"])
        assert codec.encode(value).hex() == case["hex"]
        assert codec.decode(bytes.fromhex(case["hex"]), max_bytes=1 << 16) == value
    for case in vectors["codec_rejects"]:
        with pytest.raises(codec.CodecError):
            codec.decode(bytes.fromhex(case["hex"]), max_bytes=1 << 16)


def test_key_and_address_vectors(vectors):
    seed = bytes.fromhex(vectors["key"]["seed"])
    public_key = bytes(nacl.signing.SigningKey(seed).verify_key)  # plain Ed25519 (RFC 8032)
    assert public_key.hex() == vectors["key"]["public_key"]
    raw = hashlib.sha256(b"keiretsu/address/v1\x00" + public_key).digest()[:20]
    assert raw.hex() == vectors["key"]["address_bytes"]
    assert address_of(public_key) == vectors["key"]["address"]
    assert parse_address(vectors["key"]["address"]) == raw
    for typo in vectors["address_typos_rejected"]:
        with pytest.raises(ValueError):
            parse_address(typo)


def test_transaction_vectors(vectors):
    spec = vectors["transaction"]
    fields = spec["body"]
    wire = [fields["version"], fields["chain_id"], fields["contract"], fields["method"],
            from_typed(fields["args"]), fields["nonce"], fields["expires_at_ms"],
            [bytes.fromhex(pk) for pk in fields["signers"]]]
    body_bytes = codec.encode(wire)
    assert body_bytes.hex() == spec["body_hex"]
    assert hashlib.sha256(b"keiretsu/tx-id/v1\x00" + body_bytes).hexdigest() == spec["tx_id"]
    chain = fields["chain_id"].encode()
    message = hashlib.sha256(b"keiretsu/tx-sign/v1\x00" + bytes([len(chain)]) + chain + body_bytes).digest()
    assert message.hex() == spec["signing_message"]
    signature = nacl.signing.SigningKey(bytes.fromhex(vectors["key"]["seed"])).sign(message).signature
    assert [signature.hex()] == spec["signatures"]
    signed = codec.encode([wire, [signature]])
    assert signed.hex() == spec["signed_hex"]
    tx = check_stateless(signed, fields["chain_id"])
    assert tx.tx_id.hex() == spec["tx_id"] == tx_id_of(body_bytes).hex()
    two = check_stateless(bytes.fromhex(vectors["two_signers"]["signed_hex"]), fields["chain_id"])
    assert two.tx_id.hex() == vectors["two_signers"]["tx_id"]
    assert [pk.hex() for pk in two.body.signers] == vectors["two_signers"]["signers"]


def test_merkle_vectors(vectors):
    spec = vectors["merkle"]
    leaves = [bytes.fromhex(leaf) for leaf in spec["leaves"]]
    root = bytes.fromhex(spec["root"])
    assert merkle_root(leaves) == root
    for proof in spec["proofs"]:
        path = [(step["left"], bytes.fromhex(step["hash"])) for step in proof["path"]]
        assert verify_proof(leaves[proof["index"]], path, root)
    assert hashlib.sha256(b"keiretsu/merkle-empty/v1").hexdigest() == spec["empty_root"]


def test_block_header_and_state_hash_vectors(vectors):
    spec = vectors["block_header"]
    f = spec["fields"]
    header = BlockHeader(f["chain_id"], f["height"], bytes.fromhex(f["prev_hash"]), f["time_ms"],
                         bytes.fromhex(f["tx_root"]), bytes.fromhex(f["results_root"]),
                         bytes.fromhex(f["state_hash"]), f["raft_index"], f["raft_term"])
    assert codec.encode(header.to_wire()).hex() == spec["header_hex"]
    assert hashlib.sha256(b"keiretsu/block/v1\x00" + bytes.fromhex(spec["header_hex"])).hexdigest() \
        == spec["block_hash"] == header.hash().hex()
    state = vectors["state_hash"]
    writes = {bytes.fromhex(k): None if v is None else bytes.fromhex(v) for k, v in state["writes"]}
    expected = state_hash_after(bytes.fromhex(state["prev_state_hash"]), state["height"], writes)
    assert expected.hex() == state["state_hash"]


if __name__ == "__main__" and sys.argv[1:] == ["--rewrite"]:
    VECTORS_PATH.write_text(json.dumps(generate(), indent=2, ensure_ascii=False) + "\n")
