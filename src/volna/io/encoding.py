"""Decide how a delimited text file is encoded, refusing anything that is not text.

Accepted, in this order:

* UTF-8, with or without a byte-order mark (what volna, Kobo, R and pandas write);
* UTF-16 with a byte-order mark (Excel's "Unicode text" export);
* Windows-1251, the Russian Windows code page Excel uses for "CSV (semicolon
  delimited)", but only when the decoded text is plausible: no control
  characters other than tab, CR and LF, the bytes above 127 are nearly all
  Cyrillic letters or common typographic punctuation, and those letters are
  not glued to Latin letters inside words (which is what a Latin-1 "Café"
  decoded as Windows-1251 looks like: "Cafй").

Anything else is refused with one line naming the first byte that is not
UTF-8, rather than guessed: a wrong guess silently changes every answer.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from volna.errors import ReadError

# Large enough to be fast, small enough that checking a 1 GB file does not
# need a second gigabyte.
_CHUNK = 1 << 24

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# Bytes that are control characters in every encoding volna accepts; tab, LF
# and CR are the only ones a CSV file needs.
_CONTROL = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0D)) + b"\x7f"

# Windows-1251 bytes above 127 that Russian, Ukrainian or Belarusian text uses:
# the letters А-я, Ёё, Ўў, Ґґ, Єє, Її, Іі, and typographic punctuation
# (… ‘ ’ “ ” „ • – — « » № ° § © ® ™ € and the no-break space).
_CP1251_LETTERS = bytes(range(0xC0, 0x100)) + bytes(
    [0xA8, 0xB8, 0xA1, 0xA2, 0xA5, 0xB4, 0xAA, 0xBA, 0xAF, 0xBF, 0xB2, 0xB3]
)
_CP1251_PUNCT = bytes(
    [
        0x85,
        0x91,
        0x92,
        0x93,
        0x94,
        0x84,
        0x95,
        0x96,
        0x97,
        0xAB,
        0xBB,
        0xB9,
        0xB0,
        0xA7,
        0xA9,
        0xAE,
        0x99,
        0x88,
        0xA0,
        0xB1,
        0x8B,
        0x9B,
        0xB7,
    ]
)
_ASCII = bytes(range(0x80))
# A Cyrillic letter byte next to a Latin letter: rare in Russian text, the
# rule in Latin-1 text misread as Windows-1251.
_MIXED_SCRIPT = re.compile(rb"[A-Za-z][\xc0-\xff]|[\xc0-\xff][A-Za-z]")

# Magic numbers of files people rename to .csv by mistake, for a better hint.
_MAGIC = (
    (b"PK\x03\x04", "it looks like an .xlsx (zip) file"),
    (b"PAR1", "it looks like a parquet file"),
    (b"$FL2", "it looks like an SPSS .sav file"),
    (b"$FL3", "it looks like an SPSS .zsav file"),
    (b"<stata_dta>", "it looks like a Stata .dta file"),
    (b"\xd0\xcf\x11\xe0", "it looks like an old Excel .xls file"),
)


@dataclass(frozen=True, slots=True)
class TextSource:
    """Where to read UTF-8 text from, and what the file was encoded in.

    ``data`` holds UTF-8 bytes (no byte-order mark) when the file had to be
    re-encoded or its line endings fixed; it is None when the file itself is
    clean UTF-8 and can be read straight from disk (faster, less memory).
    """

    encoding: str
    data: bytes | None


def _hint(head: bytes) -> str:
    for magic, hint in _MAGIC:
        if head.startswith(magic):
            return f"; {hint}"
    return ""


def sniff_text(path: Path, name: str) -> TextSource:
    """Refuse binary files and find byte-order marks; cheap enough for any size.

    A file without a byte-order mark is assumed to be UTF-8 here: the CSV
    parser validates UTF-8 as it reads, and only when it refuses the file
    does :func:`recode` look closer (so the common case reads the file once).
    ``name`` is the file name used in messages.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = p.write_bytes(b"id\\x00x")
    >>> sniff_text(p, "data.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.csv: binary data, not text (NUL byte at offset 2); ...
    """
    saw_lf = saw_cr = False
    offset = 0
    head = b""
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            if offset == 0:
                head = chunk[:16]
                if chunk.startswith(_UTF16_BOMS):
                    return _utf16(path, name)
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise ReadError(
                    f"{name}: binary data, not text (NUL byte at offset {offset + nul}); "
                    f"expected a CSV file{_hint(head)}"
                )
            saw_lf = saw_lf or b"\n" in chunk
            saw_cr = saw_cr or b"\r" in chunk
            offset += len(chunk)
    encoding = "utf-8-sig" if head.startswith(_UTF8_BOM) else "utf-8"
    if saw_cr and not saw_lf:
        # Old Mac line endings (CR only): the CSV parser splits on LF.
        return TextSource(encoding, _cr_to_lf(path.read_bytes()))
    return TextSource(encoding, None)


def recode(path: Path, name: str) -> TextSource:
    """The file as UTF-8 bytes when it is not UTF-8: Windows-1251 if plausible.

    Called when the parser found invalid UTF-8; ReadError naming the first
    offending byte unless the text is plausible Windows-1251.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = p.write_bytes("имя\\nАня\\n".encode("cp1251"))
    >>> recode(p, "data.csv").encoding
    'cp1251'
    >>> _ = p.write_bytes("name\\nCafé\\n".encode("latin-1"))
    >>> recode(p, "data.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.csv: not text in UTF-8 or Windows-1251 (byte 0xe9 at offset 8); ...
    """
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_offset, bad_byte = exc.start, raw[exc.start]
    else:
        raise ReadError(f"{name}: the CSV parser refused the text although it is UTF-8")
    text = _cp1251(raw)
    if text is None:
        raise ReadError(
            f"{name}: not text in UTF-8 or Windows-1251 (byte 0x{bad_byte:02x} at offset "
            f"{bad_offset}); save it as UTF-8 CSV{_hint(raw[:16])}"
        )
    data = text.encode("utf-8")
    if b"\r" in data and b"\n" not in data:
        data = _cr_to_lf(data)
    return TextSource("cp1251", data)


def _cr_to_lf(data: bytes) -> bytes:
    return data.replace(b"\r", b"\n")


def _utf16(path: Path, name: str) -> TextSource:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"{name}: starts like UTF-16 text but is not (offset {exc.start}); save it as UTF-8 CSV"
        ) from None
    if "\x00" in text:
        raise ReadError(f"{name}: binary data, not text (NUL character); expected a CSV file")
    data = text.encode("utf-8")
    if b"\r" in data and b"\n" not in data:
        data = _cr_to_lf(data)
    return TextSource("utf-16", data)


def _cp1251(raw: bytes) -> str | None:
    """The text if ``raw`` is plausible Windows-1251, else None."""
    if len(raw.translate(None, _CONTROL)) != len(raw):
        return None
    high = raw.translate(None, _ASCII)
    if not high:
        return None  # pure ASCII would have been valid UTF-8
    letters = len(high) - len(high.translate(None, _CP1251_LETTERS))
    other = len(high.translate(None, _CP1251_LETTERS + _CP1251_PUNCT))
    # Nearly every non-ASCII byte must be a letter or common punctuation...
    if other > len(high) // 50:
        return None
    # ...and Cyrillic letters must mostly stand among Cyrillic letters.
    if letters and len(_MIXED_SCRIPT.findall(raw)) > letters * 0.3:
        return None
    try:
        return raw.decode("cp1251")
    except UnicodeDecodeError:  # 0x98 is unassigned in Windows-1251
        return None
