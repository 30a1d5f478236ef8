"""Parquet: the canonical table's natural home, typed and compact.

Reading keeps the file's types; :func:`volna.io.to_canonical` converts them
(a parquet written by pandas, with float columns holding NaN for missing
integers, reads like one written by volna).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from volna.errors import ReadError
from volna.io.raw import RawTable

_MAGIC = b"PAR1"


def read_parquet(path: Path, source: str) -> RawTable:
    """Read a parquet file; ReadError (one line) if it is not one or is damaged.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "data.parquet"
    >>> _ = p.write_bytes(b"PAR1 but not really")
    >>> read_parquet(p, "data.parquet")
    Traceback (most recent call last):
    ...
    volna.errors.ReadError: data.parquet: not a valid parquet file (truncated or damaged)
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head != _MAGIC:
        raise ReadError(f"{source}: not a parquet file (it does not start with PAR1)")
    if size < 12 or tail != _MAGIC:
        raise ReadError(f"{source}: not a valid parquet file (truncated or damaged)")
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(f"{source}: not a valid parquet file ({detail})") from None
    return RawTable(frame, source, "parquet")


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write the canonical table as parquet (zstd-compressed)."""
    frame.write_parquet(path, compression="zstd")
