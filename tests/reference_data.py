"""R's reference data sets (api, nhanes, scd), read the way R wrote them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
REFERENCE_DATA = REFERENCE / "data"


def read_reference(name: str) -> pl.DataFrame:
    """One reference CSV; empty cells and "NA" are missing values, as in R."""
    return pl.read_csv(REFERENCE_DATA / name, infer_schema_length=None, null_values=["", "NA"])
