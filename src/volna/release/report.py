"""The release report (JSON and HTML) and the codebook (CSV and Markdown).

The report travels with the public file, so it holds aggregates only: counts of
respondents at risk, of suppressed cells, of redacted items, never a key combination
or a redacted text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from volna.questionnaire.model import Paradata, Question, Questionnaire
from volna.release.recode import Recode
from volna.release.risk import STANDARD_K, RiskSummary

LIMITATIONS = [
    "Risk is measured on the quasi-identifiers named; a variable left out of --quasi is "
    "assumed unknown to an adversary.",
    "Free text: natasha's NER reads Russian only; in Latin script only people are "
    "recognised (given-name list, titles, regional surname endings), not places or "
    "organisations. Read the redacted answers before publishing them.",
    "Weights are released rounded to 2 decimals; weights calibrated on cells finer than "
    "the released categories can reveal them.",
]


def _categories(series: pl.Series) -> tuple[int, int | None]:
    counts = series.drop_nulls().value_counts()
    if counts.height == 0:
        return 0, None
    return counts.height, int(counts.get_column("count").min())


def build_report(
    *,
    source: str,
    n: int,
    quasi: Sequence[str],
    sensitive: Sequence[str],
    k: int,
    l: int | None,  # noqa: E741
    weights: str | None,
    before: RiskSummary,
    after: RiskSummary,
    recodes: Sequence[Recode],
    mask: pl.DataFrame,
    order: Sequence[str],
    original: pl.DataFrame,
    released: pl.DataFrame,
    removed: dict,
    redaction: dict,
    redacted: bool,
    suppressed: bool,
    seed_given: bool,
) -> dict:
    """The report as plain data (what ``report.json`` holds)."""
    by_variable = {v: int(mask.get_column(v).sum()) for v in quasi}
    loss = {}
    for v in quasi:
        cats_before, small_before = _categories(original.get_column(v))
        cats_after, small_after = _categories(released.get_column(v))
        loss[v] = {
            "categories_before": cats_before,
            "categories_after": cats_after,
            "smallest_before": small_before,
            "smallest_after": small_after,
            "suppressed": by_variable[v],
            "suppressed_pct": round(100 * by_variable[v] / n, 2) if n else 0.0,
        }
    held_k = after.violations[k] == 0
    rules = [
        {
            "rule": f"{k}-anonymity on the sample (a blank cell is its own category)",
            "held": held_k,
            "detail": f"{after.violations[k]} respondents in keys shared by fewer than {k}",
        },
    ]
    if l is not None:
        for s in sensitive:
            below = after.l_diversity[s]["keys_below_l"]
            rules.append(
                {
                    "rule": f"distinct {l}-diversity of {s}",
                    "held": below == 0,
                    "detail": f"{below} key combinations below l={l}",
                }
            )
    rules += [
        {
            "rule": "paradata removed (ids, durations, times)",
            "held": not removed["kept_paradata"],
            "detail": "kept on request: " + (", ".join(removed["kept_paradata"]) or "none"),
        },
        {
            "rule": "free text redacted",
            "held": redacted,
            "detail": ", ".join(redaction["columns"]) or "no free-text columns",
        },
        {"rule": "rows shuffled", "held": True, "detail": "seed given" if seed_given else ""},
    ]
    return {
        "volna_release": 1,
        "source": source,
        "respondents": n,
        "k": k,
        "l": l,
        "quasi_identifiers": list(quasi),
        "sensitive": list(sensitive),
        "weights": weights,
        "risk_before": before.to_dict(),
        "risk_after": after.to_dict(),
        "recodes": [
            {"variable": r.variable, "method": r.method, "mapping": r.mapping} for r in recodes
        ],
        "suppression": {
            "applied": suppressed,
            "cells": int(sum(by_variable.values())),
            "respondents": int(mask.select(pl.any_horizontal(pl.all())).to_series().sum())
            if mask.width
            else 0,
            "by_variable": by_variable,
            "order": list(order),
        },
        "information_loss": loss,
        "removed": removed,
        "redaction": {"columns": redaction["columns"], "counts": dict(redaction["counts"])},
        "shuffled": True,
        "seed": "given (keep it secret: it undoes the shuffle)"
        if seed_given
        else "random, not recorded",
        "rules": rules,
        "limitations": LIMITATIONS,
    }


def render_json(report: dict) -> str:
    """``report.json``."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Release report: {{ r.source }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3} .ok{color:#1a7f37} .fail{color:#b42318;font-weight:bold}
</style></head><body>
<h1>Release report</h1>
<p>{{ r.respondents }} respondents from <code>{{ r.source }}</code>;
key variables (quasi-identifiers): {{ r.quasi_identifiers | join(", ") }};
sensitive: {{ r.sensitive | join(", ") or "none" }};
k = {{ r.k }}{% if r.l %}, l = {{ r.l }}{% endif %};
weights: {{ r.weights or "none (risk 1/f)" }}.</p>

<h2>Rules</h2>
<table><tr><th>rule</th><th>held</th><th>detail</th></tr>
{% for rule in r.rules %}<tr><td>{{ rule.rule }}</td>
<td class="{{ 'ok' if rule.held else 'fail' }}">{{ "yes" if rule.held else "no" }}</td>
<td>{{ rule.detail }}</td></tr>{% endfor %}
</table>

<h2>Risk before and after</h2>
<table><tr><th>measure</th><th>before</th><th>after</th></tr>
{% for level in levels %}<tr><td>respondents violating {{ level }}-anonymity</td>
<td>{{ r.risk_before.violations[level|string] }}</td>
<td>{{ r.risk_after.violations[level|string] }}</td></tr>{% endfor %}
<tr><td>key combinations</td><td>{{ r.risk_before["keys"] }}</td>
<td>{{ r.risk_after["keys"] }}</td></tr>
<tr><td>expected re-identifications (global risk)</td><td>{{ r.risk_before.global_risk }}</td>
<td>{{ r.risk_after.global_risk }}</td></tr>
<tr><td>global risk, % of respondents</td><td>{{ r.risk_before.global_risk_pct }}</td>
<td>{{ r.risk_after.global_risk_pct }}</td></tr>
<tr><td>highest individual risk</td><td>{{ r.risk_before.max_risk }}</td>
<td>{{ r.risk_after.max_risk }}</td></tr>
<tr><td>risky respondents (above median + 2 MAD and 0.1)</td><td>{{ r.risk_before.risky }}</td>
<td>{{ r.risk_after.risky }}</td></tr>
{% for s in r.sensitive %}<tr><td>smallest l-diversity of {{ s }}</td>
<td>{{ r.risk_before.l_diversity[s]["min"] }}</td>
<td>{{ r.risk_after.l_diversity[s]["min"] }}</td></tr>
{% endfor %}</table>
<p>Individual risk as sdcMicro's <code>measure_risk</code> (Benedetti-Franconi approximation;
1/f without weights); suppressed cells match any value there, as in sdcMicro.</p>

<h2>Global recoding</h2>
{% if r.recodes %}<table>
<tr><th>variable</th><th>method</th><th>new code &larr; old values</th></tr>
{% for rec in r.recodes %}<tr><td>{{ rec.variable }}</td><td>{{ rec.method }}</td><td>
{% for new, old in rec.mapping.items() %}{{ new }} &larr; {{ old | join(", ") }}<br>{% endfor %}
</td></tr>{% endfor %}</table>{% else %}<p>None.</p>{% endif %}

<h2>Local suppression and information loss</h2>
<p>{{ r.suppression.cells }} cells blanked in {{ r.suppression.respondents }} respondents
(order tried: {{ r.suppression.order | join(", ") }}).</p>
<table><tr><th>variable</th><th>categories before</th><th>after</th><th>smallest before</th>
<th>after</th><th>suppressed</th><th>%</th></tr>
{% for v, x in r.information_loss.items() %}<tr><td>{{ v }}</td><td>{{ x.categories_before }}</td>
<td>{{ x.categories_after }}</td><td>{{ x.smallest_before }}</td><td>{{ x.smallest_after }}</td>
<td>{{ x.suppressed }}</td><td>{{ x.suppressed_pct }}</td></tr>{% endfor %}</table>

<h2>Removed and redacted</h2>
<ul>
<li>paradata removed: {{ r.removed.paradata | join(", ") or "none" }}</li>
<li>paradata kept on request: {{ r.removed.kept_paradata | join(", ") or "none" }}</li>
<li>questions dropped (named with --drop, or marked in the questionnaire as how
respondents were reached): {{ r.removed.dropped | join(", ") or "none" }}</li>
<li>columns the questionnaire does not describe, removed:
{{ r.removed.unknown | join(", ") or "none" }}</li>
<li>free text redacted in: {{ r.redaction.columns | join(", ") or "none" }};
{% for kind, n in r.redaction.counts.items() %}{{ kind }} {{ n }}
{%- if not loop.last %}, {% endif %}{% else %}nothing found{% endfor %}</li>
<li>rows shuffled; seed: {{ r.seed }}</li>
</ul>

<h2>Limitations</h2>
<ul>{% for x in r.limitations %}<li>{{ x }}</li>{% endfor %}</ul>
</body></html>
"""


def render_html(report: dict) -> str:
    """``report.html``: the same content for people (jinja2, autoescaped)."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined)
    levels = sorted({*STANDARD_K, report["k"]})
    return env.from_string(_TEMPLATE).render(r=report, levels=levels)


def build_codebook(
    frame: pl.DataFrame,
    q: Questionnaire,
    recodes: Sequence[Recode],
    mask: pl.DataFrame,
    weights: str | None,
) -> pl.DataFrame:
    """One row per released column: labels, type, codes, recode, suppressed and missing."""
    column_map = q.column_map
    by_var = {r.variable: r.describe() for r in recodes}
    rows = []
    for col in frame.columns:
        item, code = column_map.get(col, (None, None))
        labels_ru = labels_en = kind = codes = ""
        if isinstance(item, Question):
            labels_ru, labels_en = item.labels.get("ru", ""), item.labels.get("en", "")
            kind = item.type
            if code is not None and code.startswith("_other:"):
                kind = "text (please specify)"
            elif code is not None:
                choice = item.choice(code)
                kind = "option (true/false)"
                labels_ru = f"{labels_ru}: {choice.labels.get('ru', '')}".strip(": ")
                labels_en = f"{labels_en}: {choice.labels.get('en', '')}".strip(": ")
            elif item.choices:
                codes = "; ".join(f"{c.code}={c.label('en')}" for c in item.choices)
        elif isinstance(item, Paradata):
            labels_ru, labels_en = item.labels.get("ru", ""), item.labels.get("en", "")
            kind = f"paradata ({item.type})"
        elif col == weights:
            labels_en, labels_ru, kind = "Weight (rounded to 2 decimals)", "Вес", "decimal"
        rows.append(
            {
                "variable": col,
                "label_ru": labels_ru,
                "label_en": labels_en,
                "type": kind,
                "codes": codes,
                "recode": by_var.get(col, ""),
                "suppressed": int(mask.get_column(col).sum()) if col in mask.columns else 0,
                "missing": int(frame.get_column(col).null_count()),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "variable": pl.String,
            "label_ru": pl.String,
            "label_en": pl.String,
            "type": pl.String,
            "codes": pl.String,
            "recode": pl.String,
            "suppressed": pl.Int64,
            "missing": pl.Int64,
        },
    )


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def codebook_markdown(codebook: pl.DataFrame, report: dict) -> str:
    """``codebook.md``: the codebook as a Markdown table, with the release's rules."""
    lines = [
        f"# Codebook: released data from {report['source']}",
        "",
        f"{report['respondents']} respondents, rows in random order. Key variables "
        f"(k = {report['k']}): {', '.join(report['quasi_identifiers'])}. A blank cell in a "
        "key variable may be a suppressed value (column `suppressed`).",
        "",
        "| " + " | ".join(codebook.columns) + " |",
        "|" + "---|" * codebook.width,
    ]
    for row in codebook.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
