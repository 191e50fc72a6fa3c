"""Keys and addresses: a mistyped address is refused, never paid; key files stay private."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import keys
from ledger.keys import AddressError, KeyPair, address_of, is_address, parse_address

BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
seeds = st.binary(min_size=32, max_size=32)


@given(seeds)
def test_address_text_round_trips_to_its_bytes(seed):
    key = KeyPair(seed)
    text = key.address
    assert text.startswith(keys.ADDRESS_PREFIX) and len(text) == keys.ADDRESS_TEXT_CHARS
    assert parse_address(text) == keys.address_bytes(key.public_key)
    assert is_address(text)


@given(seeds, st.data())
def test_every_single_character_typo_is_caught(seed, data):
    text = KeyPair(seed).address
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    replacement = data.draw(st.sampled_from(BASE32_ALPHABET + "KX01"), label="replacement")
    typo = text[:position] + replacement + text[position + 1:]
    if typo == text:
        return
    assert not is_address(typo)
    with pytest.raises(AddressError):
        parse_address(typo)


@given(seeds, st.integers(0, 37))
def test_swapping_two_neighbouring_characters_is_caught(seed, position):
    text = KeyPair(seed).address
    body = text[2:]
    swapped = body[:position] + body[position + 1] + body[position] + body[position + 2:]
    if swapped != body:
        assert not is_address("kx" + swapped)


@pytest.mark.parametrize("text", ["", "kx", "KX" + "a" * 39, "kx" + "A" * 39, "xx" + "a" * 39, "kx" + "a" * 38,
                                  "kx" + "1" * 39, None, 42, b"kx"])
def test_malformed_addresses_are_refused(text):
    assert not is_address(text)


def test_the_address_is_a_hash_of_the_public_key_not_the_key():
    key = KeyPair(bytes(range(32)))
    assert address_of(key.public_key) == key.address
    assert key.public_key.hex() not in key.address


def test_verify_never_raises_on_garbage():
    key = KeyPair(bytes(32))
    signature = key.sign(b"m")
    assert keys.verify(key.public_key, b"m", signature)
    assert not keys.verify(key.public_key, b"n", signature)
    assert not keys.verify(key.public_key, b"m", signature[:-1])
    assert not keys.verify(b"\x00" * 31, b"m", signature)
    assert not keys.verify(b"\xff" * 32, b"m", signature)


def test_key_file_is_private_and_loads_back(tmp_path):
    key = KeyPair(bytes(range(32)))
    path = tmp_path / "node.key"
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyPair.load(path).public_key == key.public_key
    assert key.seed.hex() not in repr(key)
    with pytest.raises(FileExistsError):
        key.save(path)


def test_damaged_key_files_are_refused(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text("keiretsu-ed25519-seed:zz\n")
    with pytest.raises(ValueError):
        KeyPair.load(path)
    path.write_text("something else\n")
    with pytest.raises(ValueError):
        KeyPair.load(path)
    with pytest.raises(ValueError):
        KeyPair(b"short")


def _rfc4648_text(raw: bytes) -> str:
    """The printable form as first specified: base64's base32 of address and checksum."""
    import base64
    return keys.ADDRESS_PREFIX + base64.b32encode(raw + keys._checksum(raw)).decode("ascii").rstrip("=").lower()


@given(st.binary(min_size=20, max_size=20))
def test_the_text_form_is_rfc4648_base32(raw):
    assert keys.address_text(raw) == _rfc4648_text(raw)


@given(st.binary(min_size=20, max_size=20), st.data())
def test_the_fast_reading_accepts_exactly_what_the_explaining_one_accepts(raw, data):
    text = keys.address_text(raw)
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    replacement = data.draw(st.characters(max_codepoint=0x24F), label="replacement")
    edited = text[:position] + replacement + text[position + 1:]
    try:
        explained: bytes | None = keys._parse_or_explain(edited)
    except AddressError:
        explained = None
    assert keys._parse_canonical(edited) == explained
    assert keys._parse_canonical(text) == raw
