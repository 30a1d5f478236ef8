"""The ``volna`` command.

Every user mistake ends in one line on standard error naming the file, row,
column and value, and a non-zero exit status; never a traceback. Set
``VOLNA_DEBUG=1`` to see the traceback of an unexpected internal error.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from volna.errors import VolnaError

app = typer.Typer(
    name="volna",
    help="Survey research on emigration waves: questionnaire, validation, estimates, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
questionnaire_app = typer.Typer(
    help="Check, import and export questionnaires.", no_args_is_help=True
)
app.add_typer(questionnaire_app, name="questionnaire")

out = Console(soft_wrap=True)
err = Console(stderr=True)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class ColumnPolicy(StrEnum):
    error = "error"
    drop = "drop"
    keep = "keep"


QuestionnaireArg = Annotated[
    Path, typer.Argument(help="The questionnaire: volna YAML or an XLSForm (.xlsx).")
]
DataArg = Annotated[Path, typer.Argument(help="Responses: csv, xlsx, parquet, sav, dta.")]


def _load(path: Path):
    from volna.questionnaire.model import Questionnaire

    return Questionnaire.load(path)


@app.command()
def validate(
    questionnaire: QuestionnaireArg,
    data: DataArg,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for machines.")
    ] = OutputFormat.text,
    show: Annotated[int, typer.Option(help="How many problems to list (text format).")] = 50,
    unknown_columns: Annotated[
        ColumnPolicy, typer.Option(help="What to do with columns the questionnaire lacks.")
    ] = ColumnPolicy.error,
) -> None:
    """List every problem in DATA: row, column, value and rule. Exit 1 if there is any."""
    from volna.validation import validate as run

    report = run(data, _load(questionnaire), unknown_columns=unknown_columns.value)
    if format is OutputFormat.json:
        typer.echo(report.to_json())
    else:
        for line in report.lines(show):
            out.print(line, markup=False, highlight=False)
        if len(report.problems) > show:
            out.print(f"... and {len(report.problems) - show} more (use --show or --format json)")
        if report.ok:
            out.print(f"{data}: {report.n_rows} rows, no problems")
        else:
            table = Table("rule", "problems", title=f"{data}: {report.n_rows} rows")
            for rule, count in report.counts.items():
                table.add_row(rule, str(count))
            out.print(table)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def summary(
    questionnaire: QuestionnaireArg,
    data: DataArg,
    language: Annotated[str | None, typer.Option("--lang", help="ru or en.")] = None,
) -> None:
    """Print unweighted counts and shares of every question (a first look, not estimates)."""
    from volna.io import read
    from volna.summary import describe

    q = _load(questionnaire)
    frame = read(data, q)
    describe(frame, q, out, language=language, source=str(data))


@questionnaire_app.command("check")
def questionnaire_check(questionnaire: QuestionnaireArg) -> None:
    """Load a questionnaire (which checks every expression) and print its outline."""
    q = _load(questionnaire)
    table = Table("name", "type", "columns", "asked when", title=f"{questionnaire}: {q.id}")
    for question in q.questions:
        table.add_row(
            question.name,
            question.type,
            str(len(question.columns)),
            " and ".join(q.relevance(question)) or "",
        )
    out.print(table)
    out.print(
        f"{len(q.answerable)} questions, {len(q.columns)} columns, "
        f"{len(q.multiple_choice)} multi-response sets, {len(q.pairs)} paired items"
    )


@questionnaire_app.command("import")
def questionnaire_import(
    form: Annotated[Path, typer.Argument(help="An XLSForm (.xlsx).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The YAML file to write.")],
) -> None:
    """Convert an XLSForm into volna's YAML questionnaire."""
    from volna.questionnaire.model import Questionnaire

    q = Questionnaire.from_xlsform(form)
    q.save(output)
    out.print(f"{form} -> {output}: {len(q.answerable)} questions")


@questionnaire_app.command("export")
def questionnaire_export(
    questionnaire: QuestionnaireArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The .xlsx XLSForm to write.")],
) -> None:
    """Convert a volna questionnaire into an XLSForm for Kobo or ODK."""
    q = _load(questionnaire)
    q.to_xlsform(output)
    out.print(f"{questionnaire} -> {output}")


@app.command()
def convert(
    questionnaire: QuestionnaireArg,
    data: DataArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="csv, xlsx, parquet, sav or dta.")],
    language: Annotated[str | None, typer.Option("--lang", help="Label language.")] = None,
) -> None:
    """Read DATA into volna's canonical table and write it in another format."""
    from volna.io import read, write

    q = _load(questionnaire)
    frame = read(data, q)
    write(frame, output, q, language=language)
    out.print(f"{data} -> {output}: {frame.height} rows, {frame.width} columns")


class Study(StrEnum):
    okrussians = "okrussians"


@app.command()
def example(
    study: Annotated[Study, typer.Argument(help="The bundled study.")] = Study.okrussians,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of respondents.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 1,
    output: Annotated[Path, typer.Option("-o", "--output", help="The data file to write.")] = Path(
        "data.csv"
    ),
) -> None:
    """Generate SYNTHETIC responses for a bundled study (and an answer key of planted cases)."""
    from volna.examples.generate_okrussians import write_example

    output.parent.mkdir(parents=True, exist_ok=True)
    written = write_example(output, n=n, seed=seed)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"[bold]{n} synthetic respondents[/bold] (not real people), seed {seed}")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and an exit status."""
    try:
        app()
    except VolnaError as exc:
        err.print(f"volna: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("volna: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, traceback on request
        if os.environ.get("VOLNA_DEBUG"):
            raise
        err.print(
            f"volna: internal error: {type(exc).__name__}: {exc} "
            "(a bug: rerun with VOLNA_DEBUG=1 and report the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
