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

from volna.cli_options import (
    ColumnPolicy,
    DataFormatOption,
    MissingColumns,
    MissingColumnsOption,
    UnknownColumnsOption,
    check_unique,
    choose_language,
    read_data,
    spell_remedy,
)
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


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        out.print(f"volna {version('volna')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _volna(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Survey research on emigration waves: questionnaire, validation, estimates, reports."""


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


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
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.error,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """List every problem in DATA: row, column, value and rule. Exit 1 if there is any."""
    from volna.validation import validate as run

    report = run(
        data,
        _load(questionnaire),
        format=data_format.value if data_format is not None else None,
        unknown_columns=unknown_columns.value,
        missing_columns=missing_columns.value,
    )
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
    language: Annotated[
        str | None,
        typer.Option("--lang", help="A language of the questionnaire (default: its first)."),
    ] = None,
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.error,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Print unweighted counts and shares of every question (a first look, not estimates)."""
    from volna.summary import describe

    q = _load(questionnaire)
    language = choose_language(language, q, questionnaire)
    frame = read_data(data, q, data_format, unknown_columns, missing_columns)
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

    if output.suffix.lower() not in (".yaml", ".yml"):
        raise VolnaError(f"{output}: the questionnaire is written as YAML; name it .yaml")
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
    language: Annotated[
        str | None, typer.Option("--lang", help="Label language (.sav, .dta and .xlsx labels).")
    ] = None,
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.error,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Read DATA into volna's canonical table and write it in another format."""
    from volna.io import write

    q = _load(questionnaire)
    language = choose_language(language, q, questionnaire)
    frame = read_data(data, q, data_format, unknown_columns, missing_columns)
    write(frame, output, q, language=language)
    out.print(f"{data} -> {output}: {frame.height} rows, {frame.width} columns")


class WeightMethod(StrEnum):
    rake = "rake"
    poststratify = "poststratify"


class MissingPolicy(StrEnum):
    error = "error"
    exclude = "exclude"


@app.command()
def weight(
    data: DataArg,
    margins: Annotated[
        Path,
        typer.Option(
            "--margins", help="The margins YAML file (schema: examples/okrussians/margins.yaml)."
        ),
    ],
    use: Annotated[
        str | None,
        typer.Option(
            "--use", help="Margins to weight to, by name, comma-separated (default: all)."
        ),
    ] = None,
    questionnaire: Annotated[
        Path | None,
        typer.Option(
            "--questionnaire",
            "-q",
            help="Read DATA with this questionnaire (without it every column is read as text).",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Column of sampling weights (default: 1 for everyone)."),
    ] = None,
    method: Annotated[
        WeightMethod, typer.Option(help="rake (several margins) or poststratify (one margin).")
    ] = WeightMethod.rake,
    tol: Annotated[
        float, typer.Option(help="Stop raking when every margin is this close (relative).")
    ] = 1e-10,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="Most raking sweeps.")] = 1000,
    missing: Annotated[
        MissingPolicy,
        typer.Option(
            help="A missing value in a margin variable: error, or exclude the respondent."
        ),
    ] = MissingPolicy.error,
    collapse: Annotated[
        list[str] | None,
        typer.Option(help="Merge a level in data and targets: variable:level=into (repeatable)."),
    ] = None,
    trim_upper: Annotated[
        float | None,
        typer.Option("--trim-upper", help="Cap the weights at X times the mean, keeping margins."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write the data with the new weights (csv, xlsx, parquet...)."),
    ] = None,
    weight_column: Annotated[
        str, typer.Option("--weight-column", help="Name of the new weight column.")
    ] = "weight",
    report: Annotated[
        bool, typer.Option("--report", help="Print the diagnostics: weights, margins, steps.")
    ] = False,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Proportions before and after weighting: var or var=level, comma-separated.",
        ),
    ] = None,
    screening: Annotated[
        Path | None,
        typer.Option(
            "--screening",
            help="Screen first with these rules (needs --questionnaire) and weight only the "
            "respondents the policy keeps.",
        ),
    ] = None,
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.keep,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Weight DATA to known population margins and say what the weighting changed."""
    import polars as pl

    from volna.design import SurveyDesign
    from volna.diagnostics import diagnose
    from volna.margins import MarginError, parse_collapse, read_margins, select_margins
    from volna.weighting import WeightingError

    chosen = select_margins(read_margins(margins), use)
    merges = parse_collapse(collapse or [])
    frame, q = _read_for_weighting(
        data, questionnaire, weights, chosen, (data_format, unknown_columns, missing_columns)
    )
    if screening is not None:
        from volna.screening import read_rules
        from volna.screening import screen as run_screen

        if questionnaire is None:
            raise VolnaError("--screening needs --questionnaire: the rules read its questions")
        screened = run_screen(frame, q, read_rules(screening))
        frame = screened.kept
        out.print(
            f"{data}: screening ({screening.name}) excluded {screened.n_excluded} of "
            f"{screened.data.height} respondents; weighting the other {frame.height}",
            markup=False,
        )
    if weight_column in frame.columns:
        raise WeightingError(
            f"{data}: column {weight_column} already exists; name the new weights with "
            "--weight-column"
        )
    base = SurveyDesign.from_frame(frame, weights=weights)
    try:
        if method is WeightMethod.rake:
            weighted = base.rake(
                chosen, tol=tol, max_iter=max_iter, missing=missing.value, collapse=merges
            )
        else:
            weighted = base.poststratify(chosen, missing=missing.value, collapse=merges)
        if trim_upper is not None:
            weighted = weighted.trim(upper=trim_upper)
    except (MarginError, WeightingError) as exc:
        raise exc.within(str(data)) from None

    names = ", ".join(m.title for m in chosen)
    out.print(f"{data}: {frame.height} respondents weighted to {names}", markup=False)
    if not report:  # the report has its own, fuller account of the steps
        for step in weighted.weighting:
            out.print(step.describe(), markup=False, highlight=False)
    if report or compare:
        result = diagnose(
            weighted,
            collapse=merges,
            compare=check_unique(
                "--compare", [c.strip() for c in (compare or "").split(",") if c.strip()]
            ),
            unweighted=base,
        )
        if report:
            out.print("")
            out.print(result.to_text(), markup=False, highlight=False)
        else:
            out.print("")
            out.print(result.to_text(["estimates"]), markup=False, highlight=False)
    if out_file is not None:
        from volna.io import write

        column = pl.Series(weight_column, weighted.weights, dtype=pl.Float64)
        write(frame.with_columns(column), out_file, q)
        out.print(f"wrote {out_file} (weights in column {weight_column})", markup=False)


def _read_for_weighting(
    data: Path, questionnaire: Path | None, weights: str | None, margins, options
):
    """The responses and the questionnaire to write them with.

    Without a questionnaire every column is text, except the sampling weights and the
    numbers margins cut into bins, which must then be numbers.
    """
    import polars as pl

    from volna.io import read_raw
    from volna.questionnaire.model import Questionnaire

    data_format = options[0]
    if questionnaire is not None:
        q = _load(questionnaire)
        frame = read_data(data, q, *options)
    else:
        q = Questionnaire.loads("id: responses\nquestions: []", "<no questionnaire>")
        frame = read_raw(data, format=data_format.value if data_format else None).frame
    frame = _some_rows(frame, data)
    if weights is not None and weights not in frame.columns:
        raise VolnaError(f"{data}: --weights {weights}: no such column in the data")
    numeric = [weights] if weights else []
    numeric += [b.source for m in margins for b in m.derived.values()]
    for col in dict.fromkeys(numeric):
        if col in frame.columns and frame.schema[col] == pl.String:
            frame = frame.with_columns(_numbers(frame.get_column(col), data))
    return frame, q


def _numbers(text, data: Path):
    """A text column as numbers; a cell that is not a number is an error naming it."""
    import polars as pl

    from volna.errors import ReadError, excerpt

    cleaned = text.str.strip_chars()
    values = cleaned.cast(pl.Float64, strict=False)
    bad = (values.is_null() & cleaned.is_not_null() & (cleaned != "")).arg_true()
    if len(bad):
        row = int(bad[0])
        raise ReadError(
            f"{data}: row {row + 1}, column {text.name}: {excerpt(text[row])} is not a number"
        )
    return values


@app.command()
def screen(
    questionnaire: QuestionnaireArg,
    data: DataArg,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules", help="Screening rules YAML (schema: examples/okrussians/screening.yaml)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the data with flag_, why_ and excluded columns."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Variables to estimate with everyone and without the excluded, "
            "comma-separated: shares (or means), the difference and its SE.",
        ),
    ] = None,
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.error,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Flag speeders, straightliners, duplicates, partial completes; say how many are excluded."""
    from volna.screening import read_rules
    from volna.screening import screen as run

    q = _load(questionnaire)
    settings = read_rules(rules) if rules is not None else None
    frame = _some_rows(read_data(data, q, data_format, unknown_columns, missing_columns), data)
    result = run(frame, q, settings)
    table = Table("rule", "flagged", "excluded", "only this rule", title=f"{data}: screening")
    for row in result.summary.iter_rows(named=True):
        table.add_row(row["rule"], str(row["flagged"]), str(row["excluded"]), str(row["only"]))
    out.print(table)
    n, k = result.data.height, result.n_excluded
    ran = set(result.summary["rule"])
    policy = ", ".join(r for r in result.rules.excluding if r in ran) or "no rule"
    out.print(
        f"{n} respondents: {k} excluded ({100 * k / max(n, 1):.1f}%) by {policy}; {n - k} kept",
        markup=False,
        highlight=False,
    )
    if result.duplicate_pairs.height:
        out.print(f"{result.duplicate_pairs.height} duplicate pairs", markup=False)
    if compare:
        from volna.screening import sensitivity

        names = check_unique("--compare", [c.strip() for c in compare.split(",") if c.strip()])
        found = sensitivity(result, names)
        shown = Table(
            "variable",
            "level",
            "all",
            "kept",
            "difference",
            "95% CI",
            "p",
            title="What excluding them changes (percent; means as they are)",
        )
        for row in found.iter_rows(named=True):
            scale = 1.0 if row["level"] is None else 100.0
            shown.add_row(
                row["variable"],
                row["level"] or "(mean)",
                f"{scale * row['all']:.1f}",
                f"{scale * row['kept']:.1f}",
                f"{scale * row['difference']:+.1f}",
                f"{scale * row['ci_low']:+.1f} to {scale * row['ci_high']:+.1f}",
                f"{row['p_value']:.3f}",
            )
        out.print(shown)
    if output is not None:
        if output.suffix.lower() != ".csv":
            raise VolnaError(f"{output}: --out writes CSV; give a .csv file name")
        try:
            result.data.write_csv(output)
        except OSError as exc:
            raise VolnaError(f"{output}: cannot write: {exc.strerror or exc}") from None
        out.print(f"wrote {output}", markup=False, highlight=False)


def _some_rows(frame, data: Path):
    """``frame``, if it has respondents: a header without rows has nothing to screen or weigh."""
    if frame.height == 0:
        raise VolnaError(f"{data}: no respondents (the file has a header and no rows)")
    return frame


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

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VolnaError(f"{output.parent}: cannot create the folder: {exc.strerror}") from None
    written = write_example(output, n=n, seed=seed)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"[bold]{n} synthetic respondents[/bold] (not real people), seed {seed}")


@app.command("report")
def report_command(
    questionnaire: QuestionnaireArg,
    data: DataArg,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The report configuration (schema: examples/okrussians/report.yaml); "
            "default: the built-in defaults.",
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The folder to write the report into.")
    ] = Path("report"),
    language: Annotated[
        str | None,
        typer.Option(
            "--lang",
            help="ru, en, or all (every language of the questionnaire); "
            "default: the questionnaire's first language.",
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Comma-separated: html, xlsx, md.")
    ] = "html,xlsx,md",
    data_format: DataFormatOption = None,
    unknown_columns: UnknownColumnsOption = ColumnPolicy.keep,
    missing_columns: MissingColumnsOption = MissingColumns.error,
) -> None:
    """Build the report of DATA (tables, charts, rules applied) and write HTML, XLSX, Markdown."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from volna.report.write import check_formats, write_report

    wanted = check_formats(f for f in formats.split(",") if f.strip())
    q = _load(questionnaire)
    languages = _report_languages(language, q, questionnaire)
    # report building is the heavy import (estimation, charts): load it only when asked
    from volna.report.build import build_report
    from volna.report.config import ReportConfig, load_config

    settings = load_config(config) if config is not None else ReportConfig.default()
    frame = _some_rows(read_data(data, q, data_format, unknown_columns, missing_columns), data)

    written = []
    reports = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        for lang in languages:
            task = bar.add_task(f"report ({lang})", total=None)

            def progress(what: str, done: int, total: int, *, _task=task, _lang=lang):
                label = f"report ({_lang}): {what}" if what else f"report ({_lang})"
                bar.update(_task, completed=done, total=total, description=label)

            built = build_report(q, frame, settings, lang=lang, progress=progress)
            bar.update(task, description=f"writing ({lang})")
            written += write_report(built, output, wanted)
            reports.append(built)
            bar.remove_task(task)

    for path in written:
        if path.parent == output:  # the charts beside the Markdown go unlisted
            out.print(f"wrote {path}", markup=False, highlight=False)
    out.print(f"{data}: {frame.height} respondents; report in {output}/", markup=False)
    notices = dict.fromkeys(r.synthetic_notice for r in reports if r.synthetic_notice)
    for notice in notices:
        out.print(f"[bold]{notice}[/bold]", highlight=False)


def _report_languages(language: str | None, q, questionnaire: Path) -> list[str]:
    """The languages to write the report in: one, or every one of the questionnaire's."""
    known = list(q.languages)
    if language is None:
        return [q.default_language or (known[0] if known else "en")]
    if language.strip().lower() == "all":
        return known or ["en"]
    by_case = {lang.casefold(): lang for lang in known}
    chosen = [by_case.get(part.strip().casefold()) for part in language.split(",") if part.strip()]
    if None in chosen or not chosen:
        raise VolnaError(
            f"{questionnaire}: --lang {language}: the questionnaire has labels in "
            f"{', '.join(known) or 'no language'} (or say all)"
        )
    return check_unique("--lang", chosen)


# Commands that live beside their room: each module adds its own and imports its heavy
# dependencies (starlette, natasha) only when its command runs.
for _register in (
    "volna.collect.commands",
    "volna.collect.serve_command",
    "volna.release.command",
):
    __import__(_register, fromlist=["register"]).register(app)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and an exit status."""
    try:
        app()
    except VolnaError as exc:
        message = exc.render(spell_remedy)
        err.print(f"volna: error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("volna: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, traceback on request
        if os.environ.get("VOLNA_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            # the file system said no (permissions, no such folder, disk full): not a bug
            err.print(
                f"volna: error: {exc.filename}: {exc.strerror or exc}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(2)
        # its first line only, cut short: an internal message may quote the data
        detail = (str(exc).splitlines() or [""])[0]
        detail = detail if len(detail) <= 160 else detail[:160] + "..."
        err.print(
            f"volna: internal error: {type(exc).__name__}: {detail} "
            "(a bug: rerun with VOLNA_DEBUG=1 and report the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
