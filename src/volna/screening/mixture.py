"""Random answering against a latent class model of the sample's own answers.

A random responder's answers are as likely under "every option equally
likely" as anyone's; a genuine respondent's are far more likely under a model
of how the sample answers. :func:`random_answer_evidence` is the log Bayes
factor of the two: the log-probability of a respondent's closed answers when
each is drawn uniformly from the question's options, minus their
log-probability under a latent class model fitted to the sample (the
model-based counterpart of ``rare_answers``, which assumes the questions
independent: latent classes carry their associations, so an answer that is
common on its own but odd next to the respondent's other answers counts too).

The latent class model (Lazarsfeld & Henry 1968; Goodman 1974) has ``classes``
classes of genuine respondents, each answering the questions independently
with its own shares, plus one fixed class answering uniformly at random, so
that the random responders in the sample do not shape the genuine classes (the
mixture approach to careless responding of Meade & Craig 2012, section 4, and
Van Laar & Braeken 2022). It is fitted by EM on at most ``sample`` respondents
(a seeded subset) with half a respondent of prior weight on every answer, and
scored for all.

The closed questions, as categories: a single choice, scale or country
question one item (its declared codes, "don't know" included, else the codes
the data hold), each option of a multiple choice one yes/no item (a random
tick is a coin flip), an integer or decimal question with a declared
``min`` and ``max`` one item of at most 12 equal-width bins (uniform: each
bin's share of the range). Unanswered items add nothing. Attention checks and
honeypots are left out.

The evidence is compared with the sample's own: standardised by its median and
median absolute deviation (x 1.4826), it is a robust z whose one-sided normal
p-value is the index ``random_answers`` (flagged under ``p < 0.001``), as the
sample's genuine respondents' evidence is a sum over many answers and close to
normal, while the few careless ones are too few to move the median and MAD.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats
from scipy.special import logsumexp

from volna.questionnaire.model import Questionnaire


def answer_categories(
    frame: pl.DataFrame, q: Questionnaire
) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """The closed answers as categories (rows x items, -1 unanswered), their uniform shares, pages.

    >>> from volna import Questionnaire
    >>> q = Questionnaire.loads('''
    ... id: d
    ... questions:
    ...   - {name: a, type: single, choices: [{code: x}, {code: y}, {code: z}]}
    ...   - {name: b, type: integer, min: 0, max: 9}
    ...   - {name: c, type: multiple, choices: [{code: u}, {code: v}]}
    ... ''')
    >>> frame = pl.DataFrame({"a": ["x", None], "b": [0, 9], "c/u": [True, False],
    ...                       "c/v": [False, None]})
    >>> codes, uniform, pages = answer_categories(frame, q)
    >>> codes.tolist(), [len(u) for u in uniform], pages
    ([[0, 0, 1, 0], [-1, 9, 0, -1]], [3, 10, 2, 2], ['', '', '', ''])
    """
    exprs: list[pl.Expr] = []
    uniform: list[np.ndarray] = []
    pages: list[str] = []
    for x in q.answerable:
        if x.is_quality_check or x.honeypot:
            continue
        page = "/".join(x.section)
        if x.type == "multiple":
            for c in x.choices:
                col = x.option_column(c.code)
                if col in frame.columns:
                    exprs.append(pl.col(col).cast(pl.Boolean).cast(pl.Int32))
                    uniform.append(np.array([0.5, 0.5]))
                    pages.append(page)
            continue
        if x.name not in frame.columns:
            continue
        if x.type in ("single", "scale", "country"):
            codes = list(x.codes)
            if not codes:
                codes = frame[x.name].drop_nulls().cast(pl.String).unique().sort().to_list()
            if len(codes) < 2:
                continue
            mapping = {str(c): i for i, c in enumerate(codes)}
            exprs.append(
                pl.col(x.name)
                .cast(pl.String)
                .replace_strict(mapping, default=None, return_dtype=pl.Int32)
            )
            uniform.append(np.full(len(codes), 1 / len(codes)))
            pages.append(page)
        elif x.type in ("integer", "decimal"):
            low, high = x.minimum, x.maximum
            if not isinstance(low, int | float) or not isinstance(high, int | float) or high <= low:
                continue
            integer = x.type == "integer"
            span = high - low + (1 if integer else 0)
            bins = int(min(span, 12)) if integer else 12
            edges = low + span * np.arange(1, bins) / bins
            if integer:  # bins of whole numbers: a bin holds the integers in [start, next start)
                starts = np.concatenate([[low], np.ceil(edges), [high + 1]])
            else:
                starts = np.concatenate([[low], edges, [high]])
            width = np.maximum(np.diff(starts), 1e-9)
            value = frame[x.name].cast(pl.Float64, strict=False).to_numpy()
            binned = np.searchsorted(starts[1:-1], np.clip(value, low, high), side="right")
            exprs.append(pl.lit(pl.Series(np.where(np.isnan(value), -1, binned), dtype=pl.Int32)))
            uniform.append(width / width.sum())
            pages.append(page)
    if not exprs:
        return np.zeros((frame.height, 0), dtype=np.int32), [], []
    coded = frame.select([e.fill_null(-1).alias(f"__{i}") for i, e in enumerate(exprs)])
    return coded.to_numpy().astype(np.int32), uniform, pages


def latent_classes(
    codes: np.ndarray,
    uniform: list[np.ndarray],
    *,
    classes: int = 8,
    iterations: int = 200,
    sample: int = 50_000,
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit the latent class model with a fixed uniform class by EM.

    Returns the class weights (``classes`` genuine ones, then the uniform
    class) and, per item, the genuine classes' log answer shares
    (``classes x categories``).

    >>> rng = np.random.default_rng(0)
    >>> kind = rng.random(1000) < 0.5  # two kinds of people, answering alike within a kind
    >>> codes = np.where(kind[:, None], rng.random((1000, 6)) < 0.9, rng.random((1000, 6)) < 0.1)
    >>> codes = codes.astype(np.int32)
    >>> codes[:20] = rng.integers(0, 2, (20, 6))  # and some random answers
    >>> weights, shares = latent_classes(codes, [np.array([0.5, 0.5])] * 6, classes=2)
    >>> sorted(weights[:2].round(1).tolist()), bool(0.005 < weights[2] < 0.05)
    ([0.5, 0.5], True)
    """
    from scipy.sparse import csr_matrix

    n, m = codes.shape
    rng = np.random.default_rng(seed)
    fit = codes if n <= sample else codes[np.sort(rng.choice(n, sample, replace=False))]
    rows = len(fit)
    # one column per (item, category): the answers as a sparse 0/1 matrix, so that
    # each EM step is two sparse products
    sizes = np.array([len(u) for u in uniform])
    offset = np.concatenate([[0], np.cumsum(sizes)])
    answered = fit >= 0
    r, j = np.nonzero(answered)
    onehot = csr_matrix(
        (np.ones(len(r)), (r, offset[j] + fit[r, j])), shape=(rows, int(offset[-1]))
    )
    log_uniform = onehot @ np.log(np.concatenate(uniform))
    item_of = np.repeat(np.arange(m), sizes)
    resp = rng.dirichlet(np.ones(classes + 1), rows)
    last = -np.inf
    log_shares = np.zeros((classes, int(offset[-1])))
    for _ in range(iterations):
        weights = resp.mean(axis=0)
        counts = (onehot.T @ resp[:, :classes]).T + 0.5  # classes x categories
        totals = np.add.reduceat(counts, offset[:-1], axis=1)
        log_shares = np.log(counts) - np.log(totals[:, item_of])
        joint = np.column_stack([onehot @ log_shares.T, log_uniform])
        joint += np.log(np.maximum(weights, 1e-300))
        total = logsumexp(joint, axis=1)
        resp = np.exp(joint - total[:, None])
        loglik = float(total.sum())
        if loglik - last < 1e-7 * abs(loglik):
            break
        last = loglik
    shares = [log_shares[:, offset[k] : offset[k + 1]] for k in range(m)]
    return resp.mean(axis=0), shares


def _class_loglik(codes: np.ndarray, shares: list[np.ndarray]) -> np.ndarray:
    """Each row's log-probability of its answers in each genuine class (rows x classes)."""
    out = np.zeros((len(codes), shares[0].shape[0]))
    for j, s in enumerate(shares):
        c = codes[:, j]
        ok = c >= 0
        out[ok] += s.T[c[ok]]
    return out


def random_answer_evidence(
    frame: pl.DataFrame, q: Questionnaire, *, classes: int = 8, min_items: int = 4
) -> np.ndarray:
    """Log Bayes factor of uniform random answers against the sample's latent class model.

    Positive: the answers are likelier drawn at random than from any kind of
    respondent the sample holds. NaN under ``min_items`` answered items.

    >>> from volna.examples import example_path
    >>> from volna.examples.generate_okrussians import generate
    >>> from volna import Questionnaire
    >>> q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    >>> data, key = generate(n=1000, seed=2)
    >>> evidence = random_answer_evidence(data, q)
    >>> bool(np.median(evidence) < 0)
    True
    """
    codes, uniform, _ = answer_categories(frame, q)
    n, m = codes.shape
    if m < min_items:
        return np.full(n, np.nan)
    weights, shares = latent_classes(codes, uniform, classes=classes)
    genuine = np.log(np.maximum(weights[:classes], 1e-300) / weights[:classes].sum())
    out = np.empty(n)
    for start in range(0, n, 200_000):
        block = codes[start : start + 200_000]
        log_uniform = np.zeros(len(block))
        for j in range(m):
            c = block[:, j]
            ok = c >= 0
            log_uniform[ok] += np.log(uniform[j][c[ok]])
        model = logsumexp(_class_loglik(block, shares) + genuine, axis=1)
        out[start : start + 200_000] = log_uniform - model
    answered = (codes >= 0).sum(axis=1)
    return np.where(answered >= min_items, out, np.nan)


def robust_p(values: np.ndarray) -> np.ndarray:
    """One-sided normal p-value of ``values`` standardised by the median and MAD (x 1.4826).

    >>> robust_p(np.array([0.0, 1, 2, 3, 4, 40])).round(4).tolist()
    [0.8695, 0.75, 0.5889, 0.4111, 0.25, 0.0]
    """
    values = np.asarray(values, dtype=float)
    middle = np.nanmedian(values)
    spread = 1.4826 * np.nanmedian(np.abs(values - middle))
    if not np.isfinite(spread) or spread <= 0:
        return np.full(len(values), np.nan)
    return stats.norm.sf((values - middle) / spread)
