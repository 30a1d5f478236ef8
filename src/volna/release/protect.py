"""The release pipeline: measure, recode, suppress, redact, check, shuffle.

:func:`release` takes the canonical response table and its questionnaire and returns a
:class:`Release` whose ``data`` passes the requested k (and l), or raises
:class:`ReleaseRefused` naming the key combinations that still fail; nothing is written
in that case. ``Release.write(folder)`` writes the data, the questionnaire that describes
them, a codebook and the report.
"""

from __future__ import annotations

import difflib
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from volna.errors import VolnaError
from volna.questionnaire.model import Paradata, Question, Questionnaire
from volna.release import recode as rc
from volna.release.risk import measure, sample_frequencies
from volna.release.suppress import suppress_to_k, suppression_order


class ReleaseError(VolnaError):
    """A release cannot be made as asked: an unknown column, a bad option."""


class ReleaseRefused(ReleaseError):
    """The protected data still break the requested k or l: nothing is written."""


#: Question types a quasi-identifier may have: one column of codes or numbers.
QUASI_TYPES = frozenset({"single", "scale", "country", "integer", "decimal", "date"})


@dataclass
class Release:
    """A protected table ready to publish, with its questionnaire, codebook and report."""

    data: pl.DataFrame
    questionnaire: Questionnaire
    report: dict
    codebook: pl.DataFrame
    source_format: str = "parquet"
    notes: list[str] = field(default_factory=list)

    def write(self, folder: str | Path, *, format: str | None = None) -> list[Path]:
        """Write data, questionnaire.yaml, codebook.md/.csv, report.html/.json into ``folder``."""
        from volna.io import write
        from volna.release.report import codebook_markdown, render_html, render_json

        folder = Path(folder)
        fmt = format or self.source_format
        suffix = {"csv": ".csv", "xlsx": ".xlsx", "parquet": ".parquet", "sav": ".sav"}
        suffix["dta"] = ".dta"
        if fmt not in suffix:
            raise ReleaseError(f"--format {fmt}: expected one of {', '.join(suffix)}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReleaseError(f"{folder}: cannot create the folder: {exc.strerror}") from None
        data_path = folder / f"data{suffix[fmt]}"
        write(self.data, data_path, self.questionnaire)
        written = [data_path]
        texts = {
            "questionnaire.yaml": self.questionnaire.to_yaml(),
            "codebook.md": codebook_markdown(self.codebook, self.report),
            "report.html": render_html(self.report),
            "report.json": render_json(self.report),
        }
        for name, text in texts.items():
            path = folder / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        csv_path = folder / "codebook.csv"
        self.codebook.write_csv(csv_path)
        written.append(csv_path)
        return written


def _unknown(name: str, known: Sequence[str], what: str, source: str) -> ReleaseError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ReleaseError(f"{source}: {what}: no column {name!r} in the data{hint}")


def _split(names: Sequence[str] | str | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n and n.strip()]


def release(
    data: pl.DataFrame,
    questionnaire: Questionnaire,
    *,
    quasi: Sequence[str] | str,
    sensitive: Sequence[str] | str = (),
    k: int = 5,
    l: int | None = None,  # noqa: E741 -- the name every SDC text gives it
    weights: str | None = None,
    keep: Sequence[str] | str = (),
    drop: Sequence[str] | str = (),
    bands: dict[str, list[float]] | None = None,
    rare: int | None = None,
    importance: Sequence[str] | str | None = None,
    suppress: bool = True,
    redact: bool = True,
    seed: int | None = None,
    source: str = "data",
    source_format: str = "parquet",
) -> Release:
    """Protect ``data`` for release: k-anonymity on the sample, l-diversity, redaction.

    ``quasi``: the key variables an adversary may know (age, gender, destination...).
    ``sensitive``: questions whose answers must not be inferred for a group (``l``).
    ``weights``: a column of expansion weights for the individual risk (sdcMicro's).
    Paradata (ids, durations, times) and the questions the questionnaire marks
    ``recruitment`` (how people were reached) are removed unless named in ``keep``
    or ``quasi``; ``drop`` removes other questions too. ``bands`` gives lower bounds for
    numeric key variables (default ten-year bands); ``rare`` is the fewest respondents a
    category keeps before it is merged into "other" (default: ``k`` or 1% of the
    respondents, whichever is more). ``importance``
    lists key variables to spare from suppression, most important first. ``seed`` makes
    the row shuffle reproducible; keep it secret, since it undoes the shuffle.

    >>> import polars as pl
    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: demo
    ... paradata: [{name: rid, type: id}]
    ... questions:
    ...   - {name: age, type: integer}
    ...   - {name: sex, type: single, choices: [{code: f}, {code: m}]}
    ... ''')
    >>> df = pl.DataFrame({"rid": [f"r{i}" for i in range(12)],
    ...                    "age": [20, 21, 22, 23, 30, 31, 32, 33, 34, 35, 36, 80],
    ...                    "sex": ["f"] * 6 + ["m"] * 6})
    >>> out = release(df, q, quasi=["age", "sex"], k=3, seed=1, redact=False)
    >>> out.data.columns
    ['age', 'sex']
    >>> out.data.group_by(["age", "sex"]).len().get_column("len").min() >= 3
    True
    """
    quasi = _split(quasi)
    sensitive = _split(sensitive)
    keep = _split(keep)
    drop = _split(drop)
    importance = _split(importance) or None
    columns = data.columns
    column_map = questionnaire.column_map
    for option, names in (
        ("--quasi", quasi),
        ("--sensitive", sensitive),
        ("--keep", keep),
        ("--drop", drop),
        ("--importance", importance or []),
    ):
        twice = [n for n, count in Counter(names).items() if count > 1]
        if twice:
            raise ReleaseError(f"{option} {','.join(names)}: {twice[0]} is named twice")
    _check_options(
        data, questionnaire, quasi, sensitive, keep, drop, weights, importance, k, l, source
    )
    if not quasi:
        raise ReleaseError(f"{source}: --quasi: name at least one key variable")
    if data.height == 0:
        raise ReleaseError(f"{source}: no respondents (the table has no rows): nothing to release")
    # a category under 1% of the sample (and under k) is merged: it is the rare value that
    # singles people out, and merging it costs less than blanking every cell it fills
    rare = max(k, round(data.height / 100)) if rare is None else rare
    bands = dict(bands or {})
    for name in bands:
        if name not in quasi:
            raise ReleaseError(f"{source}: --bands {name}: not one of the --quasi variables")

    w = None
    if weights is not None:
        w = data.get_column(weights).cast(pl.Float64, strict=False).to_numpy()
        bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
        if bad.size:
            row = int(bad[0])
            raise ReleaseError(
                f"{source}: row {row + 1}, column {weights}: {data[weights][row]!r} "
                "is not a positive weight"
            )

    before = measure(data, quasi, k=k, weights=w, sensitive=sensitive, min_l=l)

    # -- what leaves the table ------------------------------------------------
    paradata = [p.name for p in questionnaire.paradata if p.name in columns]
    removed_paradata = [c for c in paradata if c not in keep]
    # how a respondent was reached ties them to a small network: out unless asked
    recruitment = [
        x.name
        for x in questionnaire.questions
        if x.recruitment and x.name not in keep and x.name not in quasi and x.name not in drop
    ]
    dropped_columns = [
        c for name in (*drop, *recruitment) for c in _question_columns(questionnaire, name, columns)
    ]
    unknown = [c for c in columns if c not in column_map and c != weights]
    leaving = set(removed_paradata) | set(dropped_columns) | set(unknown)
    text_columns = [
        c for c in columns if c not in leaving and c in column_map and _is_text(column_map[c], c)
    ]

    # -- global recoding --------------------------------------------------------
    frame = data
    recodes: list[rc.Recode] = []
    rewritten: dict[str, Question] = {}
    for var in quasi:
        item, _code = column_map.get(var, (None, None))
        series = frame.get_column(var)
        if isinstance(item, Question) and item.type in ("integer", "decimal"):
            breaks = bands.get(var) or rc.default_breaks(series, _number(item.minimum))
            new, recode = rc.band(series, breaks, min_count=rare)
            frame = frame.with_columns(new)
            recodes.append(recode)
            rewritten[var] = rc.banded_question(item, list(recode.mapping))
        elif isinstance(item, Question) and item.type in ("single", "country"):
            new, recode = rc.merge_rare(series, rare)
            if recode is not None:
                frame = frame.with_columns(new)
                recodes.append(recode)
                kept = [
                    c
                    for c in new.drop_nulls().value_counts(sort=True).get_column(var).to_list()
                    if c != rc.OTHER
                ]
                if item.type == "single":
                    kept = [c for c in item.codes if c in kept]
                from volna.questionnaire.countries import country_name

                rewritten[var] = rc.merged_question(
                    item, kept, questionnaire.languages, country_name=country_name
                )

    # -- local suppression ------------------------------------------------------
    order = suppression_order(frame, quasi, importance)
    if suppress:
        frame, mask = suppress_to_k(
            frame, quasi, k, importance=importance, sensitive=sensitive, min_l=l
        )
    else:
        mask = pl.DataFrame({v: np.zeros(frame.height, dtype=bool) for v in quasi})
    # a "please specify" text tells what a blanked choice was: blank it with the choice
    for var in quasi:
        item, _code = column_map.get(var, (None, None))
        other = item.other_column if isinstance(item, Question) else None
        if other and other in frame.columns and mask.get_column(var).any():
            frame = frame.with_columns(
                pl.when(mask.get_column(var)).then(None).otherwise(pl.col(other)).alias(other)
            )

    # -- the check that decides -------------------------------------------------
    _refuse_if_unsafe(frame, quasi, k, sensitive, l, source)
    after = measure(frame, quasi, k=k, weights=w, suppressed=mask, sensitive=sensitive, min_l=l)

    # -- free text ----------------------------------------------------------------
    redaction_counts: dict[str, int] = {}
    if redact and text_columns:
        from volna.release.redact import Redactor

        redactor = Redactor()
        for col in text_columns:
            texts, counts = redactor.redact(frame.get_column(col).cast(pl.String).to_list())
            frame = frame.with_columns(pl.Series(col, texts, dtype=pl.String))
            for kind, n in counts.items():
                redaction_counts[kind] = redaction_counts.get(kind, 0) + n

    # -- out: columns, weights, order -------------------------------------------------
    frame = frame.drop([c for c in frame.columns if c in leaving])
    if weights is not None:
        frame = frame.with_columns(pl.col(weights).cast(pl.Float64).round(2))
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(64))
    order_rows = rng.permutation(frame.height)
    mask_out = mask[order_rows]
    frame = frame[order_rows]

    released_q = _released_questionnaire(
        questionnaire, rewritten, removed_paradata, dropped_columns, mask, frame.columns
    )
    from volna.release.report import build_codebook, build_report

    codebook = build_codebook(frame, released_q, recodes, mask_out, weights)
    report = build_report(
        source=Path(source).name,
        n=data.height,
        quasi=quasi,
        sensitive=sensitive,
        k=k,
        l=l,
        weights=weights,
        before=before,
        after=after,
        recodes=recodes,
        mask=mask,
        order=order,
        original=data,
        released=frame,
        removed={
            "paradata": removed_paradata,
            "dropped": dropped_columns,
            "unknown": unknown,
            "kept_paradata": [c for c in paradata if c in keep],
        },
        redaction={"columns": text_columns if redact else [], "counts": redaction_counts},
        redacted=redact,
        suppressed=suppress,
        seed_given=seed is not None,
    )
    return Release(frame, released_q, report, codebook, source_format)


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _is_text(entry, column: str) -> bool:
    item, code = entry
    if isinstance(item, Paradata):
        return item.type == "text"
    return item.type == "text" or (code is not None and code.startswith("_other:"))


def _question_columns(q: Questionnaire, name: str, columns: Sequence[str]) -> list[str]:
    if name in q:
        return [c for c in q[name].columns if c in columns]
    return [name] if name in columns else []


def _check_options(
    data,
    questionnaire,
    quasi,
    sensitive,
    keep,
    drop,
    weights,
    importance,
    k,
    l,  # noqa: E741
    where="data",
):
    source = questionnaire.source or "questionnaire"
    columns = data.columns
    for what, names in (("--quasi", quasi), ("--sensitive", sensitive), ("--keep", keep)):
        for name in names:
            if name not in columns:
                raise _unknown(name, columns, what, where)
    for name in drop:
        if name not in questionnaire and name not in columns:
            raise _unknown(name, columns, "--drop", where)
    if weights is not None and weights not in columns:
        raise _unknown(weights, columns, "--weights", where)
    for name in importance or ():
        if name not in quasi:
            raise ReleaseError(f"--importance {name}: not one of the --quasi variables")
    if k < 2:
        raise ReleaseError(f"--k {k}: k-anonymity needs k of at least 2")
    if l is not None and l < 1:
        raise ReleaseError(f"--l {l}: l-diversity needs l of at least 1")
    column_map = questionnaire.column_map
    for name in quasi:
        item, code = column_map.get(name, (None, None))
        if isinstance(item, Paradata):
            raise ReleaseError(
                f"{source}: --quasi {name}: paradata are removed from a release, "
                "not used as a key variable"
            )
        if isinstance(item, Question) and code is None and item.type not in QUASI_TYPES:
            raise ReleaseError(
                f"{source}: --quasi {name}: a {item.type} question cannot be a key variable "
                f"(expected one of {', '.join(sorted(QUASI_TYPES))}; free text is redacted)"
            )
        if isinstance(item, Question) and code is not None and code.startswith("_other:"):
            raise ReleaseError(
                f"{source}: --quasi {name}: free text cannot be a key variable; it is redacted"
            )
        if name in sensitive:
            raise ReleaseError(f"--quasi and --sensitive both name {name}")
        if name in drop:
            raise ReleaseError(f"--quasi and --drop both name {name}")


def failing_keys(
    frame: pl.DataFrame,
    quasi: Sequence[str],
    k: int,
    sensitive: Sequence[str] = (),
    l: int | None = None,  # noqa: E741
) -> pl.DataFrame:
    """The key combinations with fewer than ``k`` respondents or fewer than ``l`` answers.

    >>> import polars as pl
    >>> df = pl.DataFrame({"age": ["18-24", "18-24", "65+"], "vote": ["a", "b", "a"]})
    >>> failing_keys(df, ["age"], 2).rows()
    [('65+', 1, None)]
    """
    quasi = list(quasi)
    aggs = [pl.len().alias("respondents")]
    for s in sensitive:
        aggs.append(pl.col(s).drop_nulls().n_unique().alias(f"l_{s}"))
        aggs.append(pl.col(s).is_not_null().any().alias(f"_any_{s}"))
    groups = frame.group_by(quasi).agg(aggs)
    bad = pl.col("respondents") < k
    if l is not None:
        for s in sensitive:
            bad = bad | (pl.col(f"_any_{s}") & (pl.col(f"l_{s}") < l))
    out = groups.filter(bad).drop([c for c in groups.columns if c.startswith("_any_")])
    if not sensitive:
        out = out.with_columns(pl.lit(None).alias("l"))
    return out.sort("respondents", *quasi, nulls_last=True)


def _refuse_if_unsafe(frame, quasi, k, sensitive, l, source) -> None:  # noqa: E741
    bad = failing_keys(frame, quasi, k, sensitive, l)
    if bad.height == 0:
        return
    shown = []
    for row in bad.head(5).iter_rows(named=True):
        key = ", ".join(f"{v}={row[v] if row[v] is not None else '(blank)'}" for v in quasi)
        detail = f"{row['respondents']} respondent(s)"
        for s in sensitive:
            if l is not None and row.get(f"l_{s}") is not None and row[f"l_{s}"] < l:
                detail += f", {s} l={row[f'l_{s}']}"
        shown.append(f"[{key}: {detail}]")
    more = f" and {bad.height - 5} more" if bad.height > 5 else ""
    rule = f"k={k}" + (f", l={l}" if l is not None else "")
    raise ReleaseRefused(
        f"{source}: refusing to write a release that breaks {rule}: "
        f"{bad.height} key combination(s) fail: {' '.join(shown)}{more}"
    )


def _released_questionnaire(
    q: Questionnaire,
    rewritten: dict[str, Question],
    removed_paradata: list[str],
    dropped_columns: list[str],
    mask: pl.DataFrame,
    columns: list[str],
) -> Questionnaire:
    """The questionnaire describing the released table.

    Removed paradata and dropped questions go; recoded questions are rewritten. Checks
    that belong to data entry (``required``, ``constraint``) are lifted where a value
    can now be blank or a number became a band; skip logic that names a removed or
    rewritten question is lifted too, since it could no longer be evaluated.
    """
    changed = set(rewritten) | set(dropped_columns)
    suppressed = {v for v in mask.columns if mask.get_column(v).any()}

    def names_changed(expr: str | None) -> bool:
        return bool(expr) and any(f"${{{name}}}" in expr for name in changed)

    items = []
    for item in q.items:
        if isinstance(item, Question):
            if item.columns and not any(c in columns for c in item.columns):
                continue
            new = rewritten.get(item.name, item)
            updates = {}
            if new.name in suppressed and new.required is not False:
                updates["required"] = False
            if names_changed(new.relevant):
                updates["relevant"] = None
            if new.constraint and (names_changed(new.constraint) or new.name in rewritten):
                updates["constraint"] = None
                updates["constraint_message"] = {}
            if isinstance(new.required, str) and names_changed(new.required):
                updates["required"] = False
            if updates:
                new = replace(new, **updates)
            items.append(new)
        else:
            if names_changed(item.relevant):
                item = replace(item, relevant=None)
            items.append(item)
    paradata = tuple(p for p in q.paradata if p.name in columns)
    extra = {}
    checks = getattr(q, "checks", None)
    if checks:
        extra["checks"] = tuple(c for c in checks if not names_changed(getattr(c, "when", "")))
    return replace(q, items=tuple(items), paradata=paradata, source=None, **extra)


def sample_k(frame: pl.DataFrame, quasi: Sequence[str]) -> int:
    """The smallest key group of ``frame`` (the k it achieves).

    >>> import polars as pl
    >>> sample_k(pl.DataFrame({"a": [1, 1, 2, 2, 2]}), ["a"])
    2
    """
    f = sample_frequencies(frame, quasi)
    return int(f.min()) if f.size else 0
