"""The binding digest names the key that stamped it (issue 12 item 7): a rotation is not tampering."""

from __future__ import annotations

import hashlib
import hmac
import json

from oneie_operator.vault import EncryptionKey, Keyring, keyed_digest, verify_digest

DATA = {"type": "convex", "url": "https://a.example.com", "adminKey": "prod|0123456789"}


def _before_key_ids(key: EncryptionKey, data: dict[str, str]) -> str:
    derived = hashlib.sha256(b"one.ie/binding-digest/v1\x00" + key._material).digest()
    payload = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(derived, payload, hashlib.sha256).hexdigest()[:32]


def test_a_digest_names_its_key_and_verifies_under_a_rotated_keyring() -> None:
    old, new = EncryptionKey.generate("old"), EncryptionKey.generate("new")
    stamped = keyed_digest(Keyring([old]), DATA)
    assert stamped.startswith("old:")
    assert verify_digest(Keyring([old]), DATA, stamped).genuine
    assert not verify_digest(Keyring([old]), DATA, stamped).stale
    rotated = Keyring([old, new], primary="new")
    check = verify_digest(rotated, DATA, stamped)
    assert check.genuine and check.stale, "stamped by a key still in the keyring: genuine, to re-stamp"
    fresh = keyed_digest(rotated, DATA)
    assert fresh.startswith("new:")
    assert verify_digest(rotated, DATA, fresh).genuine and not verify_digest(rotated, DATA, fresh).stale


def test_a_digest_without_key_id_is_tried_with_every_key() -> None:
    old, new = EncryptionKey.generate("old"), EncryptionKey.generate("new")
    check = verify_digest(Keyring([old, new], primary="new"), DATA, _before_key_ids(old, DATA))
    assert check.genuine and check.stale


def test_tampering_an_unknown_key_and_a_dropped_key_are_not_genuine() -> None:
    old, new = EncryptionKey.generate("old"), EncryptionKey.generate("new")
    rotated = Keyring([old, new], primary="new")
    stamped = keyed_digest(Keyring([old]), DATA)
    assert not verify_digest(rotated, {**DATA, "url": "https://evil.example.com"}, stamped).genuine
    assert not verify_digest(rotated, DATA, "other:" + stamped.split(":", 1)[1]).genuine
    assert not verify_digest(rotated, DATA, "new:" + stamped.split(":", 1)[1]).genuine, "the named key decides"
    assert not verify_digest(Keyring([new]), DATA, stamped).genuine, "a key no longer held verifies nothing"
    assert not verify_digest(rotated, DATA, _before_key_ids(old, {**DATA, "type": "notion"})).genuine
    assert not verify_digest(rotated, DATA, None).genuine and not verify_digest(rotated, DATA, "").genuine
