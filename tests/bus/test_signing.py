"""HMAC-SHA256 signing and verification."""

import pytest

from kwapi.bus.signing import Signer, Verifier


def test_signature_matches_rfc4231_test_case_1():
    # RFC 4231, test case 1: key = 0x0b * 20, data = "Hi There".
    signer = Signer(b"\x0b" * 20)
    assert signer.sign(b"Hi There") == (
        b"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    )


def test_string_secret_is_utf8():
    assert Signer("clé").sign(b"x") == Signer("clé".encode()).sign(b"x")


def test_verify_accepts_its_own_signature_only():
    verifier = Verifier(["secret"])
    signature = Signer("secret").sign(b"payload")
    assert verifier.verify(b"payload", signature)
    assert not verifier.verify(b"payload!", signature)
    assert not verifier.verify(b"payload", Signer("other").sign(b"payload"))
    assert not verifier.verify(b"payload", signature.upper())
    assert not verifier.verify(b"payload", b"")


def test_several_secrets_allow_rotation():
    verifier = Verifier(["new", "old"])
    assert verifier.verify(b"p", Signer("old").sign(b"p"))
    assert verifier.verify(b"p", Signer("new").sign(b"p"))
    assert not verifier.verify(b"p", Signer("older").sign(b"p"))


def test_empty_secrets_are_refused():
    with pytest.raises(ValueError):
        Signer("")
    with pytest.raises(ValueError):
        Verifier(["", ""])
