"""Rules for published tables: which cells are shown, which are flagged, which are hidden.

A report publishes weighted percentages, but who stands behind a cell is counted in
respondents. :func:`apply_table_rules` reads a tidy estimate table (``DESIGN.md``'s
result table, as polars) and adds, for every row, the ``mark`` a renderer shows (one of
``volna.report.model.CELL_MARKS``), whether the value is ``shown``, and the name of
every rule that fired in ``flags``. Three sets of rules apply, each configurable in
:class:`TableRules`:

**Minimum cell size** (suppress; ``min_n``, default 10). A cell is hidden when fewer
than ``min_n`` respondents stand behind it: its *base* (the unweighted respondents of
the domain who answered) is below ``min_n`` (flag ``min_n_base``: the whole column goes),
or, for a proportion, the unweighted count of the level is between 1 and ``min_n - 1``
(flag ``min_n_cell``). A count of 0 is nobody: it is not hidden by this rule (0% and
100% cells are the group-disclosure rule's concern). The rule is on unweighted counts
because a weighted count hides how few people a figure describes.

**NCHS data presentation standards for proportions** (Parker et al. 2017, Vital Health
Stat 2(175); ``nchs``), applied to proportions exactly as NCHS's own implementation
(CDC's ``surveytable``, ``.lpe_percents``) does, in this order:

1. effective sample size ``n_eff = p(1-p)/se^2``, capped at the base (the base itself
   when the count is 0 or the whole base), below 30: fails (``nchs_effective_n``);
2. otherwise an absolute width of the (Korn-Graubard) interval of at most 0.05 passes;
3. otherwise a width of 0.30 or more fails (``nchs_ci_width``);
4. otherwise a relative width ``width / p`` above 130% fails (``nchs_relative_width``);
5. a proportion that passes is further flagged for review when the relative width of
   its complement ``width / (1 - p)`` is above 130% (``nchs_complement``), when its
   degrees of freedom are fewer than 8 (``nchs_df``) or when it is 0% or 100%
   (``nchs_zero_or_full``; the interval width is taken as 0 there, as NCHS does). A
   proportion with no sampling variance that is not 0 or 1 -- a share the weighting
   fixes to its target -- is known exactly: its width is 0 too.

NCHS suppresses a proportion that fails; the issue this module serves asks to flag it.
``nchs="flag"`` (the default) shows it marked ``unreliable``; ``nchs="suppress"`` hides it,
as NCHS does; ``nchs="off"`` skips the standard. The review flags never change the mark.

**Group disclosure** (``group_disclosure``, ``group_k``, default 50). A proportion of 0%
or 100% (by unweighted count: nobody or everybody of the base) in a group whose base is
below ``group_k`` tells the reader something about every member of the group ("all the
journalists in Montenegro were detained"): flag ``group_disclosure``, marked
``disclosure`` and shown (``"flag"``, default) or hidden (``"suppress"``).

Rows that are not proportions (means, quantiles, differences) get the base rule only;
their base is the ``base`` column when present, else ``n``. Proportions take ``base``
when present, else the sum of ``n`` over the levels of the variable in the domain (right
for single-choice variables; multi-response shares need the ``base`` column, since an
answerer may choose several options).

>>> import polars as pl
>>> table = pl.DataFrame({
...     "variable": ["q", "q", "q"], "level": ["a", "b", "c"], "domain": [None] * 3,
...     "estimator": ["proportion"] * 3, "estimate": [0.9, 0.1, 0.0],
...     "se": [0.02, 0.02, 0.0], "ci_low": [0.85, 0.06, 0.0], "ci_high": [0.94, 0.15, 0.02],
...     "df": [100.0] * 3, "n": [36, 4, 0], "flags": [[], [], []],
... })
>>> out = apply_table_rules(table, TableRules())
>>> out.select("level", "base", "mark", "shown").rows()
[('a', 40, '', True), ('b', 40, 'suppressed', False), ('c', 40, 'disclosure', True)]
>>> out["flags"].to_list()[1]
['min_n_cell']
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from volna.errors import VolnaError

#: what a rule does when it fires
RULE_ACTIONS = ("flag", "suppress", "off")
#: multiple-comparison corrections for significance letters
CORRECTIONS = ("holm", "bonferroni", "none")
#: interval methods for proportions a report may use (``SurveyDesign.proportion``'s names)
CI_METHODS = ("beta", "logit", "xlogit", "wilson", "asin", "likelihood", "wald")

#: NCHS thresholds (Parker et al. 2017)
NCHS_MIN_EFFECTIVE_N = 30
NCHS_NARROW_WIDTH = 0.05
NCHS_MAX_WIDTH = 0.30
NCHS_MAX_RELATIVE_WIDTH = 1.30
NCHS_MIN_DF = 8

#: a standard error below this (on the 0..1 scale) is rounding: the share is known exactly
EXACT_SE = 1e-8

#: every flag the rules add, in the order they are checked
RULE_FLAGS = (
    "min_n_base",
    "min_n_cell",
    "nchs_effective_n",
    "nchs_ci_width",
    "nchs_relative_width",
    "nchs_complement",
    "nchs_df",
    "nchs_zero_or_full",
    "group_disclosure",
)
#: the flags of a proportion that fails the NCHS standard
NCHS_FAIL = ("nchs_effective_n", "nchs_ci_width", "nchs_relative_width")
#: the flags NCHS asks a reviewer to look at (the value stays as it is)
NCHS_REVIEW = ("nchs_complement", "nchs_df", "nchs_zero_or_full")


class DisclosureError(VolnaError):
    """Table rules that cannot be applied: a bad option or a table lacking a column."""


@dataclass(frozen=True)
class TableRules:
    """The reliability, disclosure and testing rules of a report's tables.

    ``min_n``: fewest unweighted respondents behind a shown cell (base and count).
    ``nchs``: the NCHS standard for proportions, ``"flag"``, ``"suppress"`` or ``"off"``.
    ``group_disclosure``: 0%/100% cells of groups with a base below ``group_k``,
    ``"flag"``, ``"suppress"`` or ``"off"``. ``alpha`` and ``correction`` (``"holm"``,
    ``"bonferroni"``, ``"none"``) govern significance letters and other tests;
    ``ci`` is the interval for proportions (``"beta"``: Korn-Graubard, what NCHS uses)
    and ``conf_level`` its level.

    >>> TableRules(min_n=5).min_n
    5
    >>> TableRules(nchs="maybe")
    Traceback (most recent call last):
    ...
    volna.disclosure.DisclosureError: nchs: expected flag, suppress or off, found 'maybe'
    """

    min_n: int = 10
    nchs: str = "flag"
    group_disclosure: str = "flag"
    group_k: int = 50
    alpha: float = 0.05
    correction: str = "holm"
    ci: str = "beta"
    conf_level: float = 0.95

    def __post_init__(self) -> None:
        for name in ("nchs", "group_disclosure"):
            value = getattr(self, name)
            if value not in RULE_ACTIONS:
                raise DisclosureError(f"{name}: expected flag, suppress or off, found {value!r}")
        for name in ("min_n", "group_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DisclosureError(
                    f"{name}: expected a whole number of 0 or more, found {value!r}"
                )
        for name in ("alpha", "conf_level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise DisclosureError(f"{name}: expected a number between 0 and 1, found {value!r}")
        if self.correction not in CORRECTIONS:
            raise DisclosureError(
                f"correction: expected holm, bonferroni or none, found {self.correction!r}"
            )
        if self.ci not in CI_METHODS:
            raise DisclosureError(f"ci: expected one of {', '.join(CI_METHODS)}, found {self.ci!r}")


def apply_table_rules(table: pl.DataFrame, rules: TableRules | None = None) -> pl.DataFrame:
    """The table with ``base``, ``n_effective``, ``ci_width``, ``mark`` and ``shown`` added.

    ``table`` is a tidy estimate table (polars): it needs ``estimate``, ``n`` and, for
    the NCHS standard, ``se``, ``ci_low``, ``ci_high`` and ``df``; ``estimator`` tells
    proportions from the rest (missing: every row is a proportion); ``base`` gives the
    unweighted base of each row (see the module's notes for the default). The names of
    the rules that fired are appended to ``flags`` (created if absent). ``mark`` is
    ``"suppressed"`` (``shown`` false), ``"disclosure"``, ``"unreliable"`` or ``""``.

    Everything is one pass of column expressions, however many rows.

    >>> import polars as pl
    >>> t = pl.DataFrame({"estimator": ["mean"], "estimate": [41.5], "n": [8]})
    >>> apply_table_rules(t).select("mark", "shown", "flags").row(0)
    ('suppressed', False, ['min_n_base'])
    """
    rules = rules or TableRules()
    for col in ("estimate", "n"):
        if col not in table.columns:
            raise DisclosureError(f"table rules need a column {col!r}; the table has none")
    t = table
    if "flags" not in t.columns:
        t = t.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("flags"))
    if "estimator" not in t.columns:
        is_prop = pl.lit(True)
    else:
        is_prop = pl.col("estimator").fill_null("") == "proportion"
    if "base" in t.columns:
        base = pl.col("base").cast(pl.Int64)
    else:
        keys = [c for c in ("variable", "domain") if c in t.columns]
        summed = pl.col("n").sum().over(keys) if keys else pl.col("n").sum()
        base = pl.when(is_prop).then(summed).otherwise(pl.col("n")).cast(pl.Int64)
    t = t.with_columns(base.alias("base"))
    nan = float("nan")
    for col in ("se", "ci_low", "ci_high", "df"):
        if col not in t.columns:
            t = t.with_columns(pl.lit(nan).alias(col))

    p = pl.col("estimate").cast(pl.Float64)
    count = pl.col("n").cast(pl.Int64)
    b = pl.col("base")
    zero_or_full = is_prop & ((count == 0) | (count == b))
    se = pl.col("se").cast(pl.Float64)
    raw_eff = p * (1 - p) / (se * se)
    n_eff = (
        pl.when(zero_or_full | se.is_null() | se.is_nan() | (se < EXACT_SE))
        .then(b.cast(pl.Float64))
        .otherwise(raw_eff)
    )
    n_eff = pl.min_horizontal(n_eff, b.cast(pl.Float64))
    # 0%, 100%, or a share the weighting fixes (no sampling variance, up to rounding)
    exact = zero_or_full | (se.fill_nan(None).fill_null(1.0) < EXACT_SE)
    width = pl.when(exact).then(0.0).otherwise(pl.col("ci_high") - pl.col("ci_low"))
    t = t.with_columns(
        pl.when(is_prop).then(n_eff).otherwise(None).alias("n_effective"),
        pl.when(is_prop).then(width).otherwise(None).alias("ci_width"),
        zero_or_full.alias("_zero_or_full"),
        is_prop.alias("_prop"),
    )

    prop = pl.col("_prop")
    zf = pl.col("_zero_or_full")
    eff = pl.col("n_effective")
    w = pl.col("ci_width")
    # a value that cannot be estimated (no respondent, no variance) fails everything
    unknown = p.is_null() | p.is_nan()
    masks: dict[str, pl.Expr] = {
        "min_n_base": b < rules.min_n,
        "min_n_cell": prop & (count > 0) & (count < rules.min_n),
    }
    if rules.nchs != "off":
        small = eff.is_null() | eff.is_nan() | (eff < NCHS_MIN_EFFECTIVE_N)
        narrow = ~small & (w <= NCHS_NARROW_WIDTH)
        wide = ~small & ~narrow & (w.is_nan() | (w >= NCHS_MAX_WIDTH))
        relative = w / p
        loose = ~small & ~narrow & ~wide & (relative > NCHS_MAX_RELATIVE_WIDTH)
        passes = ~small & ~wide & ~loose
        df = pl.col("df").cast(pl.Float64)
        masks.update(
            {
                "nchs_effective_n": prop & small,
                "nchs_ci_width": prop & wide,
                "nchs_relative_width": prop & loose,
                "nchs_complement": prop
                & passes
                & ~narrow
                & (w / (1 - p) > NCHS_MAX_RELATIVE_WIDTH),
                "nchs_df": prop & passes & df.is_not_null() & ~df.is_nan() & (df < NCHS_MIN_DF),
                "nchs_zero_or_full": prop & passes & zf,
            }
        )
    if rules.group_disclosure != "off":
        masks["group_disclosure"] = prop & zf & (b < rules.group_k) & (b >= rules.min_n)
    t = t.with_columns(
        [(~unknown & m).fill_null(False).alias(f"_f_{k}") for k, m in masks.items()]
        + [unknown.alias("_unknown")]
    )
    fired = [name for name in RULE_FLAGS if name in masks]
    added = pl.concat_list(
        [
            pl.when(pl.col(f"_f_{name}"))
            .then(pl.lit([name], dtype=pl.List(pl.String)))
            .otherwise(pl.lit([], dtype=pl.List(pl.String)))
            for name in fired
        ]
    )
    hidden = pl.col("_unknown") | pl.col("_f_min_n_base") | pl.col("_f_min_n_cell")
    nchs_fail = pl.any_horizontal([pl.col(f"_f_{k}") for k in NCHS_FAIL if k in masks] or [False])
    group = pl.col("_f_group_disclosure") if "group_disclosure" in masks else pl.lit(False)
    if rules.nchs == "suppress":
        hidden = hidden | nchs_fail
    if rules.group_disclosure == "suppress":
        hidden = hidden | group
    mark = (
        pl.when(hidden)
        .then(pl.lit("suppressed"))
        .when(group)
        .then(pl.lit("disclosure"))
        .when(nchs_fail)
        .then(pl.lit("unreliable"))
        .otherwise(pl.lit(""))
    )
    t = t.with_columns(
        pl.concat_list([pl.col("flags").fill_null([]), added]).alias("flags"),
        mark.alias("mark"),
    ).with_columns((pl.col("mark") != "suppressed").alias("shown"))
    return t.drop([c for c in t.columns if c.startswith("_")])


def flags_fired(table: pl.DataFrame) -> list[str]:
    """The rule flags present in a table (after :func:`apply_table_rules`), in rule order.

    >>> flags_fired(pl.DataFrame({"flags": [["nchs_df"], ["min_n_cell", "zero_variance"]]}))
    ['min_n_cell', 'nchs_df']
    """
    if "flags" not in table.columns or table.height == 0:
        return []
    present = set(table.get_column("flags").explode().drop_nulls().to_list())
    return [f for f in RULE_FLAGS if f in present]


# ---------------------------------------------------------------------------------------
# the rules in words

_TEXT = {
    "min_n": {
        "en": (
            "A figure is not shown (—) when fewer than {min_n} respondents stand behind it: "
            "a base of fewer than {min_n} unweighted respondents, or between 1 and "
            "{min_n_1} respondents giving the answer."
        ),
        "ru": (
            "Значение не показывается (—), если за ним стоит меньше {min_n} респондентов: "
            "база меньше {min_n} респондентов (без взвешивания) или от 1 до {min_n_1} "
            "респондентов с этим ответом."
        ),
    },
    "nchs_flag": {
        "en": (
            "Proportions are checked against the NCHS data presentation standards for "
            "proportions (Parker et al. 2017): effective sample size below 30, an absolute "
            "width of the 95% interval of 30 points or more, or a relative width above 130% "
            "mark a figure as unreliable. NCHS would not publish such figures; here they are "
            "shown and marked. Figures on fewer than 8 degrees of freedom, 0% or 100%, or "
            "whose complement has a relative width above 130% are noted for review."
        ),
        "ru": (
            "Доли проверяются по стандартам NCHS для публикации долей (Parker et al. 2017): "
            "эффективный размер выборки меньше 30, абсолютная ширина 95%-ного интервала "
            "от 30 п. п. или относительная ширина больше 130% делают оценку ненадёжной. NCHS "
            "такие оценки не публикует; здесь они показаны с пометкой. Оценки с числом "
            "степеней свободы меньше 8, равные 0% или 100% или с относительной шириной "
            "интервала дополнения больше 130% отмечаются для проверки."
        ),
    },
    "nchs_suppress": {
        "en": (
            "Proportions that fail the NCHS data presentation standards for proportions "
            "(Parker et al. 2017) are not shown: effective sample size below 30, an absolute "
            "width of the 95% interval of 30 points or more, or a relative width above 130%. "
            "Figures on fewer than 8 degrees of freedom, 0% or 100%, or whose complement has "
            "a relative width above 130% are noted for review."
        ),
        "ru": (
            "Доли, не отвечающие стандартам NCHS для публикации долей (Parker et al. 2017), "
            "не показываются: эффективный размер выборки меньше 30, абсолютная ширина "
            "95%-ного интервала от 30 п. п. или относительная ширина больше 130%. Оценки с "
            "числом степеней свободы меньше 8, равные 0% или 100% или с относительной "
            "шириной интервала дополнения больше 130% отмечаются для проверки."
        ),
    },
    "group_flag": {
        "en": (
            "0% and 100% in a group of fewer than {group_k} respondents say something about "
            "every member of the group (group disclosure): such figures are marked."
        ),
        "ru": (
            "0% и 100% в группе меньше {group_k} респондентов сообщают что-то о каждом "
            "её участнике (групповое раскрытие): такие значения отмечены."
        ),
    },
    "group_suppress": {
        "en": (
            "0% and 100% in a group of fewer than {group_k} respondents say something about "
            "every member of the group (group disclosure): such figures are not shown."
        ),
        "ru": (
            "0% и 100% в группе меньше {group_k} респондентов сообщают что-то о каждом "
            "её участнике (групповое раскрытие): такие значения не показываются."
        ),
    },
    "ci": {
        "en": "Intervals of proportions: {level}% {method}, on the design's degrees of freedom.",
        "ru": "Интервалы для долей: {level}% {method}, по степеням свободы дизайна.",
    },
    "letters": {
        "en": (
            "Letters in banner tables name the columns of the same group a figure is "
            "significantly higher than (two-sided design-based test at {alpha}, {correction} "
            "over the pairs of columns of each row); hidden figures are not tested."
        ),
        "ru": (
            "Буквы в таблицах сопряжённости обозначают столбцы той же группы, где значение "
            "значимо ниже (двусторонний тест с учётом дизайна выборки, уровень {alpha}, "
            "{correction} по парам столбцов каждой строки); скрытые значения не сравниваются."
        ),
    },
}

_METHOD_NAMES = {
    "beta": {"en": "Korn-Graubard", "ru": "Корна — Граубарда"},
    "logit": {"en": "logit", "ru": "логит"},
    "xlogit": {"en": "logit (xlogit)", "ru": "логит (xlogit)"},
    "wilson": {"en": "Wilson", "ru": "Уилсона"},
    "asin": {"en": "arcsine", "ru": "арксинус"},
    "likelihood": {"en": "profile likelihood", "ru": "профильного правдоподобия"},
    "wald": {"en": "Wald", "ru": "Вальда"},
}

_CORRECTION_NAMES = {
    "holm": {"en": "Holm's correction", "ru": "поправка Холма"},
    "bonferroni": {"en": "Bonferroni's correction", "ru": "поправка Бонферрони"},
    "none": {
        "en": "no correction for multiple comparisons",
        "ru": "без поправки на множественные сравнения",
    },
}

#: one line per flag, for footnotes ("which rule fired")
FLAG_TEXT = {
    "min_n_base": {
        "en": "base below {min_n} respondents: not shown",
        "ru": "база меньше {min_n} респондентов: не показано",
    },
    "min_n_cell": {
        "en": "fewer than {min_n} respondents gave the answer: not shown",
        "ru": "этот ответ дали меньше {min_n} респондентов: не показано",
    },
    "nchs_effective_n": {
        "en": "effective sample size below 30 (NCHS)",
        "ru": "эффективный размер выборки меньше 30 (NCHS)",
    },
    "nchs_ci_width": {
        "en": "95% interval 30 points wide or more (NCHS)",
        "ru": "ширина 95%-ного интервала 30 п. п. и больше (NCHS)",
    },
    "nchs_relative_width": {
        "en": "relative width of the 95% interval above 130% (NCHS)",
        "ru": "относительная ширина 95%-ного интервала больше 130% (NCHS)",
    },
    "nchs_complement": {
        "en": "relative interval width of the complement above 130%: for review (NCHS)",
        "ru": "относительная ширина интервала дополнения больше 130%: для проверки (NCHS)",
    },
    "nchs_df": {
        "en": "fewer than 8 degrees of freedom: for review (NCHS)",
        "ru": "меньше 8 степеней свободы: для проверки (NCHS)",
    },
    "nchs_zero_or_full": {
        "en": "0% or 100%: for review (NCHS)",
        "ru": "0% или 100%: для проверки (NCHS)",
    },
    "group_disclosure": {
        "en": "0% or 100% of a group of fewer than {group_k} respondents (group disclosure)",
        "ru": "0% или 100% в группе меньше {group_k} респондентов (групповое раскрытие)",
    },
}


def _lang(lang: str) -> str:
    return lang if lang in ("ru", "en") else "en"


def _format_kwargs(rules: TableRules, lang: str) -> dict:
    alpha = f"{rules.alpha:g}"
    if lang == "ru":
        alpha = alpha.replace(".", ",")
    return {
        "min_n": rules.min_n,
        "min_n_1": max(rules.min_n - 1, 0),
        "group_k": rules.group_k,
        "alpha": alpha,
        "level": f"{rules.conf_level * 100:g}",
        "method": _METHOD_NAMES[rules.ci][lang],
        "correction": _CORRECTION_NAMES[rules.correction][lang],
    }


def rules_text(rules: TableRules | None = None, lang: str = "en") -> list[str]:
    """The rules in words, one sentence (or two) per rule, in ``lang`` (``ru`` or ``en``).

    >>> rules_text(TableRules(min_n=5), "en")[0][:43]
    'A figure is not shown (—) when fewer than 5'
    >>> len(rules_text(TableRules(nchs="off", group_disclosure="off"), "ru"))
    3
    """
    rules = rules or TableRules()
    lang = _lang(lang)
    kw = _format_kwargs(rules, lang)
    keys = ["min_n"]
    if rules.nchs != "off":
        keys.append(f"nchs_{rules.nchs}")
    if rules.group_disclosure != "off":
        keys.append(f"group_{rules.group_disclosure}")
    keys += ["ci", "letters"]
    return [_TEXT[k][lang].format(**kw) for k in keys]


def flag_text(flag: str, rules: TableRules | None = None, lang: str = "en") -> str:
    """A footnote for one rule flag, in ``lang``.

    >>> flag_text("min_n_base", TableRules(), "en")
    'base below 10 respondents: not shown'
    """
    rules = rules or TableRules()
    lang = _lang(lang)
    if flag not in FLAG_TEXT:
        return flag
    return FLAG_TEXT[flag][lang].format(**_format_kwargs(rules, lang))


def correction_name(correction: str, lang: str = "en") -> str:
    """The name of a multiple-comparison correction in words."""
    return _CORRECTION_NAMES[correction][_lang(lang)]


def ci_method_name(method: str, lang: str = "en") -> str:
    """The name of an interval method in words (``beta`` is Korn-Graubard)."""
    names = _METHOD_NAMES.get(method)
    return names[_lang(lang)] if names else method
