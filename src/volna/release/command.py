"""``volna release``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from volna.cli_options import (
    ColumnPolicy,
    DataFormatOption,
    MissingColumns,
    MissingColumnsOption,
    UnknownColumnsOption,
    read_data,
)


def register(app: typer.Typer) -> None:
    """Add ``volna release`` to the ``volna`` command."""
    app.command("release")(release_command)


def release_command(
    questionnaire: Annotated[
        Path, typer.Argument(help="The questionnaire: volna YAML or an XLSForm (.xlsx).")
    ],
    data: Annotated[Path, typer.Argument(help="Responses: csv, xlsx, parquet, sav, dta.")],
    quasi: Annotated[
        str,
        typer.Option(
            "--quasi", help="Key variables an adversary may know, comma-separated (age,gender,...)."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The folder to write.")] = Path(
        "release"
    ),
    sensitive: Annotated[
        str, typer.Option("--sensitive", help="Sensitive questions for l-diversity.")
    ] = "",
    k: Annotated[int, typer.Option("--k", help="Every key shared by at least k respondents.")] = 5,
    l_div: Annotated[
        int | None,
        typer.Option("--l", help="Every key's sensitive answers take at least l values."),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Column of expansion weights (for risk).")
    ] = None,
    keep: Annotated[
        str, typer.Option("--keep", help="Paradata to keep, comma-separated (said in the report).")
    ] = "",
    drop: Annotated[
        str,
        typer.Option("--drop", help="Questions to remove too, e.g. a recruitment channel."),
    ] = "",
    bands: Annotated[
        str | None,
        typer.Option("--bands", help="Lower bounds of bands: age=18,25,35,45,55,65 (';' between)."),
    ] = None,
    rare: Annotated[
        int | None,
        typer.Option(
            "--rare",
            help="Merge categories with fewer respondents into other (default: max(k, 1%)).",
        ),
    ] = None,
    importance: Annotated[
        str | None,
        typer.Option("--importance", help="Key variables to spare from suppression, first most."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the row shuffle (keep it secret).")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Format of the released data: csv, xlsx, parquet, sav, dta (default: DATA's).",
        ),
    ] = None,
    no_suppress: Annotated[
        bool, typer.Option("--no-suppress", help="Recode only; refuse if k is not reached.")
    ] = False,
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.keep,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Write a protected copy of DATA: k-anonymous, paradata removed, free text redacted."""
    from rich.console import Console

    from volna.io.raw import detect_format
    from volna.questionnaire.model import Questionnaire
    from volna.release.protect import release
    from volna.release.recode import parse_bands

    out = Console(soft_wrap=True)
    q = Questionnaire.load(questionnaire)
    fmt = detect_format(data, data_format.value if data_format is not None else None)
    frame = read_data(data, q, data_format, unknown_columns, missing_columns)
    result = release(
        frame,
        q,
        quasi=quasi,
        sensitive=sensitive,
        k=k,
        l=l_div,
        weights=weights,
        keep=keep,
        drop=drop,
        bands=parse_bands(bands),
        rare=rare,
        importance=importance,
        suppress=not no_suppress,
        seed=seed,
        source=str(data),
        source_format=fmt,
    )
    written = result.write(output, format=format)
    for path in written:
        out.print(f"wrote {path}", markup=False, highlight=False)
    r = result.report
    before, after = r["risk_before"], r["risk_after"]
    out.print(
        f"{data}: {r['respondents']} respondents; violating {k}-anonymity "
        f"{before['violations'][str(k)]} -> {after['violations'][str(k)]}; expected "
        f"re-identifications {before['global_risk']:.1f} -> {after['global_risk']:.1f}; "
        f"{r['suppression']['cells']} cells suppressed",
        markup=False,
        highlight=False,
    )
