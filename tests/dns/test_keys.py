"""Unit tests of vrref.dns.keys: TSIG keys from BIND-format key files."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.name
import dns.tsig
import pytest

from vrref.dns.keys import KeyFileError, load_keyring

KEY_FILE = Path(__file__).resolve().parents[2] / "examples" / "update.key"


def test_load_keyring_reads_the_example_key() -> None:
    keyring = load_keyring(KEY_FILE)
    assert list(keyring) == [dns.name.from_text("update.example.com.")]
    (key,) = keyring.values()
    assert key.algorithm == dns.tsig.HMAC_SHA256
    secret = key.secret if isinstance(key.secret, str) else base64.b64encode(key.secret).decode()
    assert len(base64.b64decode(secret)) == 32


def test_load_keyring_reads_bind_files_with_comments_and_several_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.conf"
    path.write_text(
        "# generated\n"
        'key "a.example." {\n  algorithm hmac-sha256; // the default\n'
        '  secret "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";\n};\n'
        "/* a second one */\n"
        'key b.example { algorithm hmac-sha512; secret "QkJCQkJCQkJCQkJC"; };\n'
    )
    keyring = load_keyring(path)
    assert [k.to_text() for k in keyring] == ["a.example.", "b.example."]
    assert keyring[dns.name.from_text("b.example.")].algorithm == dns.tsig.HMAC_SHA512
    assert keyring[dns.name.from_text("b.example.")].secret == b"BBBBBBBBBBBB"


@pytest.mark.parametrize(
    "text",
    [
        "",
        'key "k." { algorithm hmac-sha256; };',
        'key "k." { secret "AAAA"; };',
        'key "k." { algorithm hmac-nonsense; secret "AAAA"; };',
    ],
)
def test_load_keyring_rejects_incomplete_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(KeyFileError):
        load_keyring(path)


def test_a_bad_key_file_is_not_a_value_error(tmp_path: Path) -> None:
    """``vrref replica`` reports ValueError as a bad setting; a key file error, as before the
    move out of the frontend, is not one."""
    assert not issubclass(KeyFileError, ValueError)
