"""Random identifiers (object ids, request ids, API key secrets) from the OS CSPRNG.

One urandom call per id instead of one `secrets.choice` per character: the per-character calls were
5.6 % of the server's CPU under AdjustBalance load (bench/RESULTS.md profile). Eight spare bytes make
the modulo bias negligible (below 2**-64).
"""

from __future__ import annotations

import os
import string

ALPHANUMERIC = string.ascii_letters + string.digits


def random_token(length: int, alphabet: str = ALPHANUMERIC) -> str:
    number = int.from_bytes(os.urandom(length + 8), "big")
    base = len(alphabet)
    chars = []
    for _ in range(length):
        number, index = divmod(number, base)
        chars.append(alphabet[index])
    return "".join(chars)


def new_id(prefix: str, length: int) -> str:
    """An object id: `prefix` and `length` random alphanumerics (`cus_` + 14, `evt_` + 24)."""
    return prefix + random_token(length)
