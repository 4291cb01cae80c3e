"""TSIG keys from BIND-format key files: the keyring the frontend verifies requests with.

A key file is read once, when a replica starts (``vrref/runtime/node.py``) or a launcher
prints the ``-y`` argument of ``dig`` and ``nsupdate`` (``vrref/runtime/launcher.py``). It is
configuration, not traffic, so it lives with the DNS service rather than the wire frontend,
and like the zone's loader it does no I/O but read its file. A file without a usable key
raises ``KeyFileError``, an ``Exception`` and not a ``ValueError`` (as the frontend's error it
replaces was), so callers that report ``ValueError`` as a bad setting let it through as before.
"""

from __future__ import annotations

import re
from pathlib import Path

import dns.name
import dns.tsig


class KeyFileError(Exception):
    """A key file that holds no key, or a key without its algorithm or secret, or one that
    names an algorithm dnspython cannot compute."""


_KEY_BLOCK = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_KEY_ALGORITHM = re.compile(r'algorithm\s+"?([A-Za-z0-9.\-]+)"?\s*;')
_KEY_SECRET = re.compile(r'secret\s+"([A-Za-z0-9+/=\s]+)"\s*;')
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*|#[^\n]*", re.DOTALL)


def load_keyring(path: str | Path) -> dict[dns.name.Name, dns.tsig.Key]:
    """Reads TSIG keys from a BIND-format key file (``key "n" { algorithm a; secret "s"; };``).

    Raises KeyFileError when the file holds no key, or a key lacks its algorithm or secret,
    or names an algorithm dnspython cannot compute.
    """
    text = _COMMENTS.sub(" ", Path(path).read_text(encoding="utf-8"))
    keyring: dict[dns.name.Name, dns.tsig.Key] = {}
    for match in _KEY_BLOCK.finditer(text):
        name = dns.name.from_text(match.group(1))
        algorithm_match = _KEY_ALGORITHM.search(match.group(2))
        secret_match = _KEY_SECRET.search(match.group(2))
        if algorithm_match is None or secret_match is None:
            raise KeyFileError(f"{path}: key {name} needs an algorithm and a secret")
        algorithm = dns.name.from_text(algorithm_match.group(1))
        if algorithm not in dns.tsig.mac_sizes or algorithm == dns.tsig.GSS_TSIG:
            raise KeyFileError(f"{path}: key {name}: unsupported algorithm {algorithm}")
        secret = "".join(secret_match.group(1).split())
        keyring[name] = dns.tsig.Key(name, secret, algorithm)
    if not keyring:
        raise KeyFileError(f"{path}: no key found")
    return keyring
