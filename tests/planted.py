"""Careless and fraudulent respondents planted into survey data, for screening tests.

Works on any questionnaire: :func:`plant` adds respondents of every kind the
screening issue lists to genuine data and returns the answer key. The kinds:

``speeder``        a genuine respondent's answers, sent in 8-30% of the median time
``straightliner``  a genuine respondent with one answer down every scale grid
``duplicate_1``..``duplicate_3``  a genuine respondent again, under a new id and time,
                   with 1, 2 or 3 answers changed
``random``         every question answered uniformly at random, at normal speed
``patterned``      answers following a pattern down the questionnaire (1-2-3-4-5-1-...
                   on scales, the options in turn elsewhere), at normal speed
``partial_bot``    a genuine respondent's answers on some pages, uniformly random
                   answers on at least half of the pages

When the questionnaire times its pages (``duration`` paradata with a ``page``),
every respondent gets page times (:func:`page_times`): the total time, less
about a tenth for the first and last screens, shared among the pages in
proportion to the items answered on each, times a lognormal page effect
(sigma 0.3), so a page's pace is lognormal around the respondent's own pace
per item. Each planted kind then gets the times its behaviour implies: the
pages of speeders, straightliners, duplicates, random and patterned
responders are scaled with their total time (speeders fast everywhere, the
others at a genuine respondent's speed); a partial bot reads the pages it
answers itself at its template's pace and fills the others at 5-35% of it,
and its total time shrinks by what it saved.

Everything is seeded. :func:`genuine_ukrainian` makes genuine respondents for
the second test questionnaire (``fixtures/screening/ukr_wellbeing.yaml``): three
correlated latent traits behind three Likert scales with reverse-keyed items,
categorical answers that depend on them, and a little item non-response.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from volna import Questionnaire
from volna.questionnaire.model import Question

UKRAINIAN = Path(__file__).parent / "fixtures" / "screening" / "ukr_wellbeing.yaml"
#: The same questionnaire, timing each of its six pages.
UKRAINIAN_TIMED = UKRAINIAN.with_name("ukr_wellbeing_timed.yaml")
#: How fast a partial bot fills the pages it answers at random: this share of
#: the time its template spent on them.
BOT_PAGE_PACE = (0.05, 0.35)

KINDS = (
    "speeder",
    "straightliner",
    "duplicate_1",
    "duplicate_2",
    "duplicate_3",
    "random",
    "patterned",
    "partial_bot",
)


def _closed(q: Questionnaire) -> list[Question]:
    return [
        x
        for x in q.answerable
        if x.type in ("single", "scale", "multiple", "country", "integer") and not x.honeypot
    ]


def _random_answer(rng: np.random.Generator, x: Question, codes: dict) -> object:
    if x.type == "multiple":
        plain = [c.code for c in x.choices if not c.exclusive]
        exclusive = [c.code for c in x.choices if c.exclusive]
        if exclusive and rng.random() < 1 / (len(plain) + 1):
            return {c.code: c.code in exclusive[:1] for c in x.choices}
        ticked = rng.random(len(plain)) < 0.5
        if not ticked.any():
            ticked[rng.integers(len(plain))] = True
        chosen = {p for p, t in zip(plain, ticked, strict=True) if t}
        return {c.code: c.code in chosen for c in x.choices}
    if x.type == "integer":
        low = int(x.minimum) if isinstance(x.minimum, int | float) else 0
        high = int(x.maximum) if isinstance(x.maximum, int | float) else 100
        return int(rng.integers(low, high + 1))
    options = x.codes or codes[x.name]
    return options[rng.integers(len(options))]


def _set(row: dict, x: Question, value) -> None:
    if x.type == "multiple":
        for c in x.choices:
            row[x.option_column(c.code)] = value[c.code]
    else:
        row[x.name] = value


def _get(row: dict, x: Question):
    if x.type == "multiple":
        return {c.code: row[x.option_column(c.code)] for c in x.choices}
    return row[x.name]


def _id_and_times(q: Questionnaire) -> tuple[str, str, str | None]:
    ident = next(p.name for p in q.paradata if p.type == "id")
    duration = next(p.name for p in q.paradata if p.type == "duration" and p.page is None)
    when = next((p.name for p in q.paradata if p.type == "datetime"), None)
    return ident, duration, when


def _apply_skips(frame: pl.DataFrame, q: Questionnaire) -> pl.DataFrame:
    """Blank the answers the questionnaire's skip logic would not have asked for."""
    from volna.validation import compile_expression

    out = []
    for x in q.answerable:
        rules = q.relevance(x)
        if not rules:
            continue
        asked = pl.lit(True)
        for text in rules:
            asked = asked & compile_expression(text, q, current=x.name).fill_null(False)
        for c in x.columns:
            if c in frame.columns:
                out.append(pl.when(asked).then(pl.col(c)).otherwise(None).alias(c))
    return frame.with_columns(out) if out else frame


def _page_answered(frame: pl.DataFrame, q: Questionnaire) -> np.ndarray:
    """Items answered on each timed page, n x pages."""
    exprs = []
    for p in q.page_times:
        present = [
            pl.any_horizontal(
                [pl.col(c).is_not_null() for c in x.columns if c != x.other_column]
            ).cast(pl.Int32)
            for x in q.page_questions(p.page)
            if not x.honeypot
        ]
        exprs.append(pl.sum_horizontal(present).alias(p.name) if present else pl.lit(0))
    return frame.select(exprs).to_numpy().astype(float)


def page_times(frame: pl.DataFrame, q: Questionnaire, seed: int) -> pl.DataFrame:
    """``frame`` with plausible times on every page the questionnaire times.

    The total time less about a tenth (first and last screens), shared among the
    pages in proportion to the items answered on each times a lognormal page
    effect (sigma 0.3): each page's pace is lognormal around the respondent's
    own pace per item.
    """
    if not q.page_times:
        return frame
    rng = np.random.default_rng(seed)
    _, duration, _ = _id_and_times(q)
    items = _page_answered(frame, q)
    weight = np.maximum(items, 0.3) * np.exp(rng.normal(0, 0.3, items.shape))
    share = weight / weight.sum(axis=1, keepdims=True)
    total = frame[duration].cast(pl.Float64).to_numpy()[:, None]
    seconds = np.round(share * total * rng.uniform(0.85, 0.95, (len(frame), 1)), 1)
    return frame.with_columns(
        pl.Series(p.name, seconds[:, j], dtype=pl.Float64) for j, p in enumerate(q.page_times)
    )


def plant(
    data: pl.DataFrame,
    pool: pl.DataFrame,
    q: Questionnaire,
    *,
    per_kind: int = 20,
    seed: int = 7,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``data`` with ``per_kind`` respondents of every kind added, and the answer key.

    Speeders, straightliners and partial bots start from a genuine respondent of
    ``pool`` (people not in ``data``: otherwise they would be copies of someone);
    duplicates copy a respondent of ``data``.

    The planted rows are spread among the genuine ones (a duplicate after its
    original, as a second submission comes after the first); the key has
    ``respondent id``, ``planted`` (the kind) and ``template`` (the genuine row copied).
    """
    rng = np.random.default_rng(seed)
    ident, duration, when = _id_and_times(q)
    timed = [p.name for p in q.page_times]
    if any(c not in data.columns for c in timed):
        data, pool = page_times(data, q, seed), page_times(pool, q, seed + 1)
    rows = data.to_dicts()
    others = pool.to_dicts()
    n = len(rows)
    seconds = data[duration].cast(pl.Float64).to_numpy()
    median = float(np.nanmedian(seconds))
    closed = _closed(q)
    # a country question's codes: those the data hold
    codes = {
        x.name: sorted(data[x.name].drop_nulls().unique().to_list())
        for x in closed
        if x.type == "country"
    }
    grids: dict[str, list[Question]] = {}
    for x in closed:
        if x.type == "scale" and x.choice_list and not x.is_quality_check:
            grids.setdefault(x.choice_list, []).append(x)
    grids = {k: v for k, v in grids.items() if len(v) >= 4}
    pages: dict[tuple[str, ...], list[Question]] = {}
    for x in closed:
        pages.setdefault(x.section, []).append(x)
    page_list = list(pages.values())
    if timed:  # the pages are the timed ones
        page_list = [[x for x in closed if x in q.page_questions(p.page)] for p in q.page_times]
    times = data[when].to_list() if when else None

    planted, key, position = [], [], []
    for kind in KINDS:
        for k in range(per_kind):
            t = int(rng.integers(n))
            row = dict(
                rows[t] if kind.startswith("duplicate_") else others[rng.integers(len(others))]
            )
            row[ident] = f"planted-{kind}-{k:03d}"
            own = row[duration]
            row[duration] = float(seconds[rng.integers(n)])
            if times is not None:
                row[when] = times[rng.integers(n)]
            if kind == "speeder":
                row[duration] = round(median * rng.uniform(0.08, 0.3))
                if rng.random() < 0.5:  # half click through at random
                    for x in closed:
                        _set(row, x, _random_answer(rng, x, codes))
            elif kind == "straightliner":
                for items in grids.values():
                    value = items[0].scale_codes[rng.integers(len(items[0].scale_codes))]
                    for x in items:
                        row[x.name] = value
                for x in closed:
                    if x.attention:
                        row[x.name] = (
                            row[grids[x.choice_list][0].name]
                            if x.choice_list in grids
                            else row[x.name]
                        )
            elif kind.startswith("duplicate_"):
                changes = int(kind[-1])
                if times is not None and times[t] is not None:
                    row[when] = times[t] + dt.timedelta(minutes=float(rng.uniform(1, 120)))
                row[duration] = float(seconds[t] * rng.uniform(0.8, 1.2))
                answered = [x for x in closed if _get(rows[t], x) not in (None, {})]
                answered = [
                    x for x in answered if x.type != "multiple" or any(_get(rows[t], x).values())
                ]
                for j in rng.choice(len(answered), changes, replace=False):
                    x = answered[j]
                    old = _get(row, x)
                    new = old
                    while new == old:
                        new = _random_answer(rng, x, codes)
                    _set(row, x, new)
            elif kind == "random":
                for x in closed:
                    _set(row, x, _random_answer(rng, x, codes))
            elif kind == "patterned":
                start = int(rng.integers(5))
                for i, x in enumerate(closed):
                    step = start + i
                    if x.type == "scale":
                        _set(row, x, x.scale_codes[step % len(x.scale_codes)])
                    elif x.type == "multiple":
                        plain = [c.code for c in x.choices if not c.exclusive]
                        _set(
                            row, x, {c.code: c.code == plain[step % len(plain)] for c in x.choices}
                        )
                    elif x.type == "integer":
                        _set(row, x, _random_answer(rng, x, codes))
                    else:
                        options = x.codes or codes[x.name]
                        _set(row, x, options[step % len(options)])
            elif kind == "partial_bot":
                n_random = max(1, (len(page_list) + 1) // 2)
                bot_pages = rng.choice(len(page_list), n_random, replace=False)
                for p in bot_pages:
                    for x in page_list[p]:
                        _set(row, x, _random_answer(rng, x, codes))
            if timed and own:
                # pages at the speed of the (new) total time; a bot's pages faster
                for c in timed:
                    if row[c] is not None:
                        row[c] = round(row[c] * row[duration] / own, 1)
                if kind == "partial_bot":
                    for p in bot_pages:
                        c = timed[p]
                        if row[c] is not None:
                            fast = round(row[c] * rng.uniform(*BOT_PAGE_PACE), 1)
                            row[duration] = round(row[duration] - (row[c] - fast))
                            row[c] = fast
            template = rows[t][ident] if kind.startswith("duplicate_") else None
            # a duplicate arrives after its original; the others anywhere
            low = t + 0.5 if template is not None else 0.0
            position.append(rng.uniform(low, n))
            planted.append(row)
            key.append({ident: row[ident], "planted": kind, "template": template})
    frame = pl.concat([data, pl.DataFrame(planted, schema=data.schema)])
    frame = _apply_skips(frame, q)
    order = np.argsort(np.concatenate([np.arange(n, dtype=float), position]), kind="stable")
    return frame[order], pl.DataFrame(key)


# -- genuine respondents of the second questionnaire ---------------------------------


def genuine_ukrainian(
    n: int = 2000, seed: int = 3, path: Path = UKRAINIAN
) -> tuple[Questionnaire, pl.DataFrame]:
    """The Ukrainian test questionnaire and ``n`` genuine respondents to it.

    ``path`` may be :data:`UKRAINIAN_TIMED`: the same answers, with page times.
    """
    q = Questionnaire.load(path)
    rng = np.random.default_rng(seed)
    corr = np.array([[1.0, 0.4, 0.35], [0.4, 1.0, 0.3], [0.35, 0.3, 1.0]])
    traits = rng.multivariate_normal(np.zeros(3), corr, n)
    bel, trust, well = traits.T

    def pick(codes, p, shift=None):
        logits = np.log(np.asarray(p))[None, :] + (0 if shift is None else shift)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        u = rng.random((n, 1))
        idx = (prob.cumsum(axis=1) < u).sum(axis=1)
        return np.asarray(codes, dtype=object)[np.minimum(idx, len(codes) - 1)]

    cols: dict[str, object] = {"rid": [f"ua-{i:05d}" for i in range(n)]}
    # a genuine respondent takes at least 0.55 x the median time
    cols["seconds"] = np.round(np.maximum(np.exp(rng.normal(np.log(480), 0.3, n)), 0.55 * 480))
    start = dt.datetime(2024, 3, 1)
    cols["submitted"] = [
        start + dt.timedelta(minutes=float(m)) for m in np.sort(rng.uniform(0, 60 * 24 * 30, n))
    ]
    cols["country"] = pick(q["country"].codes, [0.3, 0.25, 0.12, 0.08, 0.06, 0.06, 0.05, 0.08])
    cols["oblast"] = pick(q["oblast"].codes, [0.2, 0.2, 0.15, 0.15, 0.15, 0.15])
    cols["left_year"] = pick(q["left_year"].codes, [0.6, 0.25, 0.15])
    kids = rng.random(n) < 0.45
    cols["with_children"] = np.where(kids, "yes", "no").astype(object)
    cols["n_children"] = np.where(kids, rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1]), None)
    cols["status"] = pick(q["status"].codes, [0.7, 0.05, 0.12, 0.05, 0.08])
    lang = np.clip(np.round(2.2 + 0.8 * bel + rng.normal(0, 0.7, n)), 1, 4).astype(int)
    cols["language"] = np.asarray(q["language"].codes, dtype=object)[lang - 1]
    shift = np.zeros((n, 4))
    shift[:, 0] = 0.8 * (lang - 2.5)
    shift[:, 3] = -0.8 * (lang - 2.5)
    cols["work_now"] = pick(q["work_now"].codes, [0.35, 0.2, 0.15, 0.3], shift)
    helped = {
        "money": rng.random(n) < 0.6,
        "housing": rng.random(n) < 0.4,
        "courses": rng.random(n) < 0.3 + 0.1 * (lang < 3),
        "medical": rng.random(n) < 0.25,
        "legal": rng.random(n) < 0.08,
    }
    nothing = ~np.any(list(helped.values()), axis=0)
    for code, ticked in helped.items():
        cols[f"help/{code}"] = ticked
    cols["help/none"] = nothing
    shift = np.zeros((n, 4))
    shift[:, 2] = 0.9 * bel
    shift[:, 0] = -0.5 * bel
    cols["return_plan"] = pick(q["return_plan"].codes, [0.1, 0.5, 0.2, 0.2], shift)
    scales = {"bel": bel, "tr": trust, "wb": well}
    for x in q.answerable:
        prefix = x.name.split("_")[0]
        if prefix in scales and x.type == "scale":
            value = np.clip(np.round(3 + 1.1 * scales[prefix] + rng.normal(0, 0.75, n)), 1, 5)
            value = 6 - value if x.reverse else value
            codes = np.array([str(int(v)) for v in value], dtype=object)
            codes[rng.random(n) < 0.02] = "dk"
            cols[x.name] = codes
    cols["age"] = np.clip(np.round(rng.normal(38, 12, n)), 18, 90).astype(int)
    cols["gender"] = pick(q["gender"].codes, [0.64, 0.34, 0.02])
    cols["education"] = pick(q["education"].codes, [0.2, 0.25, 0.55])
    for name in ("oblast", "status", "language", "return_plan", "gender", "education"):
        values = np.asarray(cols[name], dtype=object)
        values[rng.random(n) < 0.02] = None
        cols[name] = values
    schema = {}
    timed = [p.name for p in q.page_times]
    for c in q.columns:
        if c in timed:
            continue
        if c == "seconds":
            schema[c] = pl.Float64
        elif c == "submitted":
            schema[c] = pl.Datetime("us")
        elif c in ("age", "n_children"):
            schema[c] = pl.Int64
        elif c.startswith("help/"):
            schema[c] = pl.Boolean
        else:
            schema[c] = pl.String
    frame = pl.DataFrame({c: list(cols[c]) for c in schema}, schema=schema)
    frame = page_times(frame, q, seed + 1000).select(q.columns)
    return q, frame
