"""Column names for SPSS (.sav) and Stata (.dta), and the way back.

Both formats forbid ``/`` (so ``fears/persecution`` cannot be stored as is),
Stata allows at most 32 characters, SPSS compares names without case and
forbids a leading underscore, and each has reserved words. volna uses one
rule for both formats, so a table written as .sav and re-saved as .dta by a
colleague still reads back:

* a name that is valid in both formats is kept: ``age``, ``left_2022``;
* otherwise, if replacing each ``/`` by ``__`` makes it valid, that is the
  stored name: ``fears/persecution`` -> ``fears__persecution``;
* otherwise (other characters, too long, reserved, or clashing with another
  column) the name is cleaned to ``[A-Za-z][A-Za-z0-9_]*``, cut, and given a
  five-character suffix from a hash of the original name, so two different
  names never meet: ``a.very-long/name`` -> ``a_very_long__name_7kq2m``.

Reading needs no metadata in the file: the reader computes the stored name
of every column of the questionnaire and maps it back. The rule depends only
on the name itself (and, for the rare clashes, on the other names), so
adding a question to the questionnaire does not change existing names.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

MAX_LENGTH = 32  # Stata; SPSS allows 64 bytes
_VALID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# SPSS keywords, and Stata's reserved names (Stata: case-sensitive, so only
# the exact spellings; SPSS: any case).
_SPSS_RESERVED = frozenset(
    {"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"}
)
_STATA_RESERVED = frozenset(
    {"_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long"}
    | {"_n", "_N", "_pi", "_pred", "_rc", "_skip", "strL", "using", "with"}
)
_STATA_STR = re.compile(r"^str[0-9]+$")


def is_valid(name: str) -> bool:
    """True if ``name`` can be stored unchanged in both .sav and .dta.

    >>> is_valid("age"), is_valid("fears/persecution"), is_valid("_x"), is_valid("with")
    (True, False, False, False)
    """
    return (
        len(name) <= MAX_LENGTH
        and bool(_VALID.match(name))
        and name.lower() not in _SPSS_RESERVED
        and name not in _STATA_RESERVED
        and not _STATA_STR.match(name)
    )


def _hashed(name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    suffix = base64.b32encode(digest).decode("ascii")[:5].lower()
    base = re.sub(r"[^A-Za-z0-9_]", "_", name.replace("/", "__"))
    if not base[:1].isalpha() or not base[:1].isascii():
        base = "v" + base
    return f"{base[: MAX_LENGTH - 6]}_{suffix}"


def stored_names(columns: Iterable[str]) -> dict[str, str]:
    """Each column's name in .sav/.dta files; unique, even ignoring case (SPSS).

    >>> names = stored_names(["age", "fears/persecution", "fears/other", "_start"])
    >>> list(names.values())
    ['age', 'fears__persecution', 'fears__other', 'v_start_ho7iq']
    """
    columns = list(columns)
    first: dict[str, str] = {}
    for c in columns:
        if is_valid(c):
            first[c] = c
        elif is_valid(c.replace("/", "__")):
            first[c] = c.replace("/", "__")
        else:
            first[c] = _hashed(c)
    # A clash (two columns, one stored name, perhaps differing only in case)
    # is resolved by hashing every name involved except one that is stored
    # unchanged, so an ordinary name never moves.
    by_key: dict[str, list[str]] = {}
    for c, stored in first.items():
        by_key.setdefault(stored.lower(), []).append(c)
    out = dict(first)
    for group in by_key.values():
        if len(group) > 1:
            keep = next((c for c in group if first[c] == c), None)
            for c in group:
                if c != keep:
                    out[c] = _hashed(c)
    if len({s.lower() for s in out.values()}) != len(out):
        # Only a hash collision could get here; refuse rather than merge columns.
        raise ValueError("column names clash in .sav/.dta even after hashing")
    return out


def original_names(columns: Iterable[str]) -> dict[str, str]:
    """The reverse of :func:`stored_names`: stored name -> column.

    >>> original_names(["fears/persecution"])
    {'fears__persecution': 'fears/persecution'}
    """
    return {stored: c for c, stored in stored_names(columns).items()}
