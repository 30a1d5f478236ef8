"""The careless-responding indices together, and the combined flag the study configures.

:func:`careless_indices` computes every index the questionnaire's structure
allows, one value per respondent; :func:`_careless` flags a respondent when at
least ``at_least`` of the configured indices pass their cut-offs, and says which.

==================  ========================================================  =====================
index               what (source)                                             flagged when
==================  ========================================================  =====================
``longstring``      longest run of one answer down the scale items            ``>=`` cut-off
                    (Johnson 2005; careless::longstring)
``irv``             standard deviation of a row's scale answers               ``<=`` cut-off
                    (Dunn et al. 2018; careless::irv)
``even_odd``        minus the Spearman-Brown corrected correlation of odd-    ``>`` cut-off (-0.3:
                    and even-item halves across scales (Johnson 2005;         r under .30)
                    careless::evenodd); needs three scales
``synonyms``        within-person correlation over item pairs the data        ``<`` cut-off
                    correlate above .60 (Meade & Craig 2012; careless::psychsyn)
``antonyms``        the same over pairs correlated below -.60                 ``>`` cut-off
``mahalanobis``     robust D² of the scale answers; value: its chi-square     ``<`` cut-off
                    p-value (careless::mahad; MCD: Rousseeuw & Van            (p, 0.001)
                    Driessen 1999)
``person_fit``      normed polytomous Guttman errors over the scales          ``>`` cut-off
                    (Emons 2008; PerFit::Gnormed.poly)
``rare_answers``    lz of the closed answers under the sample's answer        ``<`` cut-off
                    shares; value: its normal p-value (Drasgow et al. 1985)   (p, 0.001)
``random_answers``  log Bayes factor of uniform random answers against a      ``<`` cut-off
                    latent class model of the sample (:mod:`.mixture`);       (p, 0.001)
                    value: its p against the sample's median and MAD
``page_speed``      the fastest timed page's seconds per answered item over   ``<`` cut-off
                    that page's median (only where the questionnaire times
                    its pages; the ``page_speed`` rule flags the same alone)
==================  ========================================================  =====================
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from volna.questionnaire.model import Questionnaire
from volna.screening.consistency import (
    even_odd,
    irv,
    longstring,
    psychometric_synonyms,
    synonym_pairs,
)
from volna.screening.duplicates import _answer_codes
from volna.screening.items import scale_items
from volna.screening.mixture import random_answer_evidence, robust_p
from volna.screening.outliers import robust_distances
from volna.screening.personfit import guttman_errors, rare_answers
from volna.screening.rules import CarelessRule
from volna.screening.speed import page_seconds_per_item, page_speed_ratio

#: Which way each index points: flagged above (+1) or below (-1) its cut-off.
DIRECTION = {
    "longstring": +1,
    "irv": -1,
    "even_odd": +1,
    "synonyms": -1,
    "antonyms": +1,
    "mahalanobis": -1,
    "person_fit": +1,
    "rare_answers": -1,
    "random_answers": -1,
    "page_speed": -1,
}


#: The indices whose value is a p-value.
P_VALUES = ("mahalanobis", "rare_answers", "random_answers")


def careless_indices(
    frame: pl.DataFrame, q: Questionnaire, *, critval: float = 0.6, min_items: int = 4
) -> pl.DataFrame:
    """Every careless-responding index the questionnaire allows, one row per respondent.

    An index that cannot be computed (too few scale items, fewer than three
    scales for even-odd, no item pair correlated beyond ``critval``) is left
    out; a respondent for whom it is undefined gets null.

    >>> from volna.examples import example_path
    >>> from volna.examples.generate_okrussians import generate
    >>> from volna import Questionnaire
    >>> q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    >>> careless_indices(generate(n=300, seed=2)[0], q).columns
    ['longstring', 'irv', 'mahalanobis', 'person_fit', 'rare_answers', 'random_answers']
    """
    out: dict[str, np.ndarray] = {}
    scales = scale_items(frame, q)
    if len(scales.names) >= min_items:
        out["longstring"] = longstring(scales.values).astype(float)
        out["irv"] = irv(scales.values)
        keyed = scales.keyed()
        factors = list(scales.factors(2).values())
        if len(factors) >= 3:
            out["even_odd"] = even_odd(keyed, factors)
        for name, anto in (("synonyms", False), ("antonyms", True)):
            pairs = synonym_pairs(scales.values, critval, antonyms=anto)
            if len(pairs) >= 3:
                out[name] = psychometric_synonyms(scales.values, pairs)
        answered = ~np.isnan(scales.values)
        filled = np.where(answered, scales.values, np.nanmean(scales.values, axis=0))
        d2, df = robust_distances(np.nan_to_num(filled))
        if df:
            out["mahalanobis"] = np.where(
                answered.sum(axis=1) >= min_items, stats.chi2.sf(d2, df), np.nan
            )
        out["person_fit"] = guttman_errors(keyed, scales.low, scales.high)
    codes = _answer_codes(frame, q, ())
    if codes.shape[1] >= min_items:
        out["rare_answers"] = stats.norm.cdf(rare_answers(codes))
        out["random_answers"] = robust_p(random_answer_evidence(frame, q, min_items=min_items))
    pages, pace = page_seconds_per_item(frame, q)
    if pages:
        ratio = page_speed_ratio(pace)
        out["page_speed"] = np.min(np.where(np.isnan(ratio), np.inf, ratio), axis=1)
        out["page_speed"][np.isinf(out["page_speed"])] = np.nan
    return pl.DataFrame({k: pl.Series(v, dtype=pl.Float64).fill_nan(None) for k, v in out.items()})


def _careless(
    frame: pl.DataFrame, q: Questionnaire, rule: CarelessRule
) -> tuple[pl.Series, pl.Series, pl.DataFrame]:
    n = frame.height
    indices = careless_indices(frame, q, critval=rule.critval, min_items=rule.min_items)
    hits = []
    reasons = []
    for name, cut in rule.indices.items():
        if name not in indices.columns:
            continue
        value = indices[name].to_numpy().astype(float)
        with np.errstate(invalid="ignore"):
            hit = value > cut if DIRECTION[name] > 0 else value < cut
            hit = np.nan_to_num(hit, nan=0).astype(bool) & ~np.isnan(value)
        hits.append(hit)
        sign = ">" if DIRECTION[name] > 0 else "<"
        shown = "p = {:.2g}" if name in P_VALUES else "{:.3g}"
        reasons.append((name, hit, value, sign, cut, shown))
    if not hits:
        return pl.Series([False] * n), pl.Series([None] * n, dtype=pl.String), indices
    count = np.sum(hits, axis=0)
    flag = count >= rule.at_least
    why: list[str | None] = [None] * n
    for i in np.flatnonzero(flag):
        why[i] = "; ".join(
            f"{name} {shown.format(value[i])} ({sign} {cut:g})"
            for name, hit, value, sign, cut, shown in reasons
            if hit[i]
        )
    return pl.Series(flag), pl.Series(why, dtype=pl.String), indices
