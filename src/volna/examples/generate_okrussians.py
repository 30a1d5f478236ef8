"""Synthetic responses for the bundled OK Russians example study.

The study reproduces the survey behind volna's founding essay: people who left
Russia after 24 February 2022, recruited online through Telegram channels,
relocation chats, social media and friends. Its questionnaire, the essay's
figures and the population margins live beside this module in
``examples/okrussians/``.

**Every row made here is invented.** Respondent ids read ``synthetic-000001``
so that the data say so wherever they are shown. The generator reproduces the
published shares (read from ``published.yaml``, so that each number lives in
one place) with plausible dependence between answers:

* IT workers are younger, better off and more confident about the future;
  healthcare workers are the most vulnerable (fear losing medicines, expect
  the worst);
* fear of persecution rises with the number of political activities, and
  rallies after the invasion come mostly from people who rallied before it;
* respondents arrive in clusters through recruitment channels, and each
  channel shifts the destination mix, activism and mood, so clustering has a
  visible design effect.

Binary answers follow a threshold model and ordered answers are cut at
quantiles of a latent score, so margins match their targets on the sample
itself; categorical answers come from a multinomial logit whose intercepts are
calibrated to the targets. The skip logic holds exactly, "none of these" is
never combined with another option, and non-required questions have a little
item non-response. Everything is vectorised (no loop over respondents), so a
million respondents take a few seconds: benchmarks use it.

A few bad respondents are planted for quality screens to find, and listed in
the answer key: speeders (under a third of the median duration),
straightliners (one answer on every expectation scale, every option ticked in
every multiple-choice set) and exact duplicates of another respondent under a
new id. They break no rule of the questionnaire.

>>> responses, key = generate(n=200, seed=1)
>>> responses.shape
(200, 51)
>>> responses["respondent_id"][0]
'synthetic-000001'
>>> key.columns
['respondent_id', 'planted', 'duplicate_of']
>>> sorted(key["planted"].unique())
['duplicate', 'speeder', 'straightliner']
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from volna.examples import example_path
from volna.questionnaire import Questionnaire
from volna.questionnaire.countries import country_codes

STUDY = "okrussians"

#: Item non-response on questions that are not required: the probability of
#: leaving each one unanswered. Sensitive questions are skipped more often.
NONRESPONSE = {
    "tickets_rules": 0.02,
    "smart_voting": 0.03,
    "pressure": 0.03,
    "prosecution_risk": 0.05,
    "fears": 0.02,
    "exp_living": 0.02,
    "exp_politics": 0.02,
    "exp_discrim": 0.02,
    "exp_work": 0.02,
    "exp_family": 0.02,
    "discrim_faced": 0.02,
    "education": 0.01,
    "english": 0.01,
    "origin": 0.01,
    "finances": 0.04,
}

#: Share of respondents planted as each kind of bad respondent.
PLANTED = {"speeder": 0.01, "straightliner": 0.01, "duplicate": 0.005}

#: Share of respondents choosing "other" for their field who leave the
#: "please specify" box empty.
OTHER_BLANK = 0.1

#: Harmless invented answers to "other field, please specify".
OTHER_FIELDS = (
    "логистика",
    "наука",
    "science",
    "строительство",
    "design",
    "юриспруденция",
    "ресторанный бизнес",
    "research",
)

EXPECTATIONS = ("exp_living", "exp_politics", "exp_discrim", "exp_work", "exp_family")
MULTIPLE = ("activity_before", "activity_after", "pressure", "fears")

# Thresholds and quantile cuts are placed on at most this many rows: rows are
# independent draws, so the first 200,000 are a random subsample and the
# cut's error (well under 0.1 point) is far below any sampling error.
_CALIBRATION_ROWS = 200_000

# Destination groups used for the dependence of plans, choice and discrimination.
_EUROPE = ("RS", "ME", "EE", "DE", "ES", "CY", "FI", "LV", "LT", "PL", "FR", "CZ", "NL", "PT")
_EUROPE += ("GB", "BG", "IT", "CH", "AT", "SE")
_CENTRAL_ASIA = ("KZ", "UZ", "KG", "MN")
_CAUCASUS = ("GE", "AM", "AZ")


# -- targets ---------------------------------------------------------------------


@cache
def _questionnaire() -> Questionnaire:
    return Questionnaire.load(example_path(STUDY, "questionnaire.yaml"))


def load_targets(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """The generator's targets from ``published.yaml``, as proportions.

    Each figure's ``assumed`` numbers where the file gives them, else the
    ``published`` ones; a yes/no figure (``{"yes": 58}``) gets the other
    answer as the rest. Distributions must sum to 100 and use the question's codes.

    >>> t = load_targets()
    >>> t["tickets_rules"]
    {'yes': 0.58, 'no': 0.42}
    >>> round(t["sector"]["it"], 3), t["age"]["median"]
    (0.445, 32.0)
    """
    path = Path(path) if path else example_path(STUDY, "published.yaml")
    figures = yaml.safe_load(path.read_text(encoding="utf-8"))["figures"]
    q = _questionnaire()
    out: dict[str, dict[str, float]] = {}
    for name, fig in figures.items():
        raw = fig.get("assumed") or fig.get("published")
        if not raw:
            raise ValueError(f"{path}: figure {name} has neither 'assumed' nor 'published' numbers")
        if fig["statistic"] == "summary":
            out[name] = {k: float(v) for k, v in raw.items()}
            continue
        question = q[fig["question"]]
        codes = tuple(sorted(country_codes())) if question.type == "country" else question.codes
        unknown = [k for k in raw if k not in codes]
        if unknown:
            raise ValueError(
                f"{path}: figure {name}: {', '.join(map(str, unknown))} not codes of "
                f"{question.name} (combined figures need 'assumed' numbers)"
            )
        percent = {str(k): float(v) for k, v in raw.items()}
        if fig["statistic"] == "distribution":
            rest = [c for c in codes if c not in percent]
            total = sum(percent.values())
            # A yes/no figure ({"yes": 58}) implies the other answer; anything
            # else must be complete, or a missing code would pass unnoticed.
            if len(codes) == 2 and len(rest) == 1:
                percent[rest[0]] = 100 - total
            elif abs(total - 100) > 1e-6:
                raise ValueError(f"{path}: figure {name} sums to {total:g}%, not 100%")
        shares = {k: v / 100 for k, v in percent.items()}
        out[name] = shares
    return out


# -- the three ways of drawing an answer ----------------------------------------


def _top(score: np.ndarray, share: float, among: np.ndarray | None = None) -> np.ndarray:
    """True for the ``share`` of rows (of those ``among``) with the highest score.

    A threshold model whose intercept is calibrated on the sample: with
    logistic noise in ``score`` this is a logit model hitting its margin.
    """
    pool = score if among is None else score[among]
    if pool.size == 0:
        return np.zeros(score.shape, dtype=bool)
    cut = np.quantile(pool[:_CALIBRATION_ROWS], 1 - share)
    out = score > cut
    return out if among is None else out & among


def _ordered(score: np.ndarray, shares: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Category index per row, cutting ``score`` so categories (lowest first) get ``shares``."""
    pool = score if among is None else score[among]
    cumulative = np.cumsum(shares)[:-1] / np.sum(shares)
    if pool.size == 0:
        return np.zeros(score.shape, dtype=np.int64)
    cuts = np.quantile(pool[:_CALIBRATION_ROWS], cumulative)
    return np.searchsorted(cuts, score, side="right")


def _choose(
    rng: np.random.Generator,
    target: np.ndarray,
    group: np.ndarray,
    shift: np.ndarray,
) -> np.ndarray:
    """Draw a category per row from a multinomial logit with per-group shifts.

    ``shift`` (groups x categories) moves each group's log-odds; the common
    intercepts are calibrated (iterative proportional fitting) so that the
    expected margin over the sample's groups equals ``target``.
    """
    n_groups, k = shift.shape
    counts = np.bincount(group, minlength=n_groups)
    weight = counts / max(len(group), 1)
    intercept = np.log(target)
    for _ in range(1000):
        logits = intercept + shift
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        margin = weight @ p
        if np.max(np.abs(margin - target)) < 1e-10:
            break
        intercept += np.log(target / np.maximum(margin, 1e-300))
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    # One search for all groups: group g's cumulative probabilities are moved
    # to [g, g + 1], so that they form one increasing sequence.
    stacked = (cdf + np.arange(n_groups)[:, None]).ravel()
    found = np.searchsorted(stacked, group + rng.random(len(group)), side="right")
    out = found - group * k
    return np.minimum(out, k - 1)


def _yes_no(answer: np.ndarray) -> np.ndarray:
    """Indices of "yes" (0) and "no" (1) in the questionnaire's shared yes_no list."""
    return np.where(answer, 0, 1)


def _shares(target: dict[str, float], codes: tuple[str, ...]) -> np.ndarray:
    return np.array([target.get(c, 0.0) for c in codes])


# -- the generator ----------------------------------------------------------------


def generate(n: int = 2000, seed: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Synthetic responses in volna's canonical table layout, and the answer key.

    ``responses`` has exactly the questionnaire's columns, in order: codes as
    text, one Boolean column per multiple-choice option, ``age`` as Int64,
    ``duration_sec`` as Float64; null where a question was skipped or left
    unanswered. ``answer_key`` lists the planted bad respondents
    (``respondent_id``, ``planted``: speeder, straightliner or duplicate,
    ``duplicate_of``). The same seed gives the same tables.

    >>> responses, key = generate(n=20, seed=3)
    >>> responses.height, key.height
    (20, 0)
    >>> responses.schema["age"], responses.schema["fears/none"]
    (Int64, Boolean)
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    q = _questionnaire()
    t = load_targets()
    if tuple(c.code for c in q.choice_lists["yes_no"]) != ("yes", "no"):
        raise ValueError("the generator expects the yes_no list to be ('yes', 'no')")
    rng = np.random.default_rng(seed)
    d: dict[str, np.ndarray] = {}  # answers as code indices or Booleans

    def codes(name: str) -> tuple[str, ...]:
        return q[name].codes

    # Recruitment channel, and what each channel does to its respondents.
    channels = codes("channel")
    n_ch = len(channels)
    channel = _choose(
        rng, _shares(t["channel"], channels), np.zeros(n, np.int64), np.zeros((1, n_ch))
    )
    d["channel"] = channel
    ch = {c: i for i, c in enumerate(channels)}
    activism_shift = rng.normal(0.0, 0.25, n_ch)
    for c, s in {"tg_activists": 0.5, "tg_news": 0.2, "tg_it": -0.2}.items():
        activism_shift[ch[c]] += s
    gloom_shift = rng.normal(0.0, 0.25, n_ch)

    # Work: employment, then the field of the employed.
    employed = _top(rng.logistic(size=n), t["employed"]["yes"])
    d["employed"] = _yes_no(employed)
    sectors = codes("sector")
    shift = rng.normal(0.0, 0.3, (n_ch, len(sectors)))
    shift[ch["tg_it"], sectors.index("it")] += 2.0
    shift[ch["tg_activists"], sectors.index("journalism")] += 1.2
    shift[ch["tg_news"], sectors.index("journalism")] += 0.6
    sector = np.full(n, -1, dtype=np.int64)
    sector[employed] = _choose(rng, _shares(t["sector"], sectors), channel[employed], shift)
    d["sector"] = sector
    it = sector == sectors.index("it")
    health = sector == sectors.index("healthcare")
    journalist = sector == sectors.index("journalism")
    # 0 not working, 1 IT, 2 healthcare, 3 any other field
    work = np.where(~employed, 0, np.where(it, 1, np.where(health, 2, 3)))

    # Age: a skewed distribution, younger in IT and older in healthcare, scaled
    # so that the median is the target.
    spread = rng.gamma(1.8, 1.0, n) * np.array([1.05, 0.8, 1.3, 1.0])[work]
    median = t["age"]["median"]
    scale = (median - 18) / np.median(spread[:_CALIBRATION_ROWS])
    age = np.clip(np.round(18 + scale * spread), 18, 90).astype(np.int64)
    d["age"] = age

    genders = codes("gender")
    shift = np.zeros((4, len(genders)))
    shift[1, genders.index("male")] = 0.6
    shift[2, genders.index("male")] = -0.8
    d["gender"] = _choose(rng, _shares(t["gender"], genders), work, shift)
    male = d["gender"] == genders.index("male")

    # Education: nobody under 22 has a postgraduate degree (the questionnaire's
    # constraint); students are mostly still at university.
    levels = codes("education")
    student = age < 22
    shift = np.zeros((4, len(levels)))
    shift[2:, levels.index("incomplete_higher")] += 3.0
    shift[2:, levels.index("higher")] -= 1.0
    shift[2:, levels.index("postgrad")] = -50.0
    shift[1::2, levels.index("higher")] += 0.3
    shift[1::2, levels.index("vocational")] -= 0.5
    education = _choose(rng, _shares(t["education"], levels), student * 2 + it, shift)
    education[student & (education == levels.index("postgrad"))] = levels.index("higher")
    d["education"] = education
    graduate = education >= levels.index("higher")

    places = codes("origin")
    d["origin"] = _choose(
        rng, _shares(t["origin"], places), channel, rng.normal(0.0, 0.3, (n_ch, len(places)))
    )
    capital = d["origin"] <= places.index("spb")

    # Wealth: IT workers and Muscovites better off.
    wealth = rng.normal(size=n) + 0.7 * it + 0.3 * capital - 0.5 * ~employed
    ladder = codes("finances")
    refused = _top(rng.random(n), t["finances"]["refuse"])
    steps = [c for c in ladder if c != "refuse"]
    finances = _ordered(wealth + rng.normal(size=n), _shares(t["finances"], steps), ~refused)
    d["finances"] = np.where(refused, ladder.index("refuse"), finances)

    score = 0.8 * it + 0.4 * graduate - 0.03 * (age - median) + 0.3 * wealth + rng.normal(size=n)
    d["english"] = _ordered(score, _shares(t["english"], codes("english")))

    # Month of leaving: young men dominate the wave after the mobilisation.
    months = codes("left_month")
    young = age < 35
    shift = np.zeros((4, len(months)))
    for code, (young_men, older_men) in {
        "2022-09": (1.3, 0.6),
        "2022-10": (1.3, 0.6),
        "2022-11": (0.5, 0.2),
    }.items():
        shift[3, months.index(code)] = young_men
        shift[2, months.index(code)] = older_men
    month = _choose(rng, _shares(t["left_month"], months), male * 2 + young, shift)
    d["left_month"] = month
    early = month <= months.index("2022-03")
    mobilisation = month >= months.index("2022-09")

    # Destination: the relocation chats pull towards their country, and each
    # channel has its own random mix; after the mobilisation more went to
    # Central Asia.
    dest_codes = tuple(t["destination"])
    n_dest = len(dest_codes)
    dest_ix = {c: i for i, c in enumerate(dest_codes)}
    by_channel = rng.normal(0.0, 0.4, (n_ch, n_dest))
    pulls = {
        "chat_ge": {"GE": 2.5},
        "chat_am": {"AM": 2.5},
        "chat_tr": {"TR": 2.5},
        "chat_il": {"IL": 4.0},
        "chat_asia": {"KZ": 3.0, "UZ": 3.0, "KG": 3.0},
        "chat_eu": dict.fromkeys(_EUROPE, 2.0),
        "tg_it": {"AM": 0.5, "GE": 0.3, "RS": 0.5, "AE": 0.5, "CY": 0.5},
    }
    for c, pull in pulls.items():
        for country, s in pull.items():
            if country in dest_ix:  # the targets may drop a small country
                by_channel[ch[c], dest_ix[country]] += s
    later = np.zeros(n_dest)
    for country, s in {"KZ": 1.3, "KG": 1.0, "UZ": 0.8, "MN": 1.0, "GE": 0.4, "TR": -0.3}.items():
        if country in dest_ix:
            later[dest_ix[country]] = s
    shift = np.repeat(by_channel, 2, axis=0)
    shift[1::2] += later
    dest = _choose(rng, _shares(t["destination"], dest_codes), channel * 2 + mobilisation, shift)
    d["destination"] = dest
    in_dest = {
        name: np.isin(dest, [dest_ix[c] for c in group if c in dest_ix])
        for name, group in (
            ("europe", _EUROPE),
            ("asia", _CENTRAL_ASIA),
            ("caucasus", _CAUCASUS),
            ("turkey", ("TR",)),
            ("israel", ("IL",)),
        )
    }

    score = rng.logistic(size=n) + 0.7 * early - 1.0 * in_dest["israel"] - 0.5 * in_dest["europe"]
    d["tickets_rules"] = _yes_no(_top(score, t["tickets_rules"]["yes"]))

    plan_codes = codes("plans")
    region = np.select(
        [
            in_dest["europe"],
            in_dest["turkey"],
            in_dest["israel"],
            in_dest["asia"],
            in_dest["caucasus"],
        ],
        [1, 2, 3, 4, 5],
        0,
    )
    shift = np.zeros((12, len(plan_codes)))
    for r, pull in {
        1: {"stay": 0.8, "move_on": -0.5},
        2: {"stay": -0.5, "move_on": 0.8},
        3: {"stay": 1.0, "move_on": -0.5, "return": -0.5},
        4: {"move_on": 0.5},
    }.items():
        for code, s in pull.items():
            shift[2 * r : 2 * r + 2, plan_codes.index(code)] += s
    shift[1::2, plan_codes.index("move_on")] += 0.3
    d["plans"] = _choose(rng, _shares(t["plans"], plan_codes), region * 2 + it, shift)

    # Activism: a latent trait, shifted by channel, behind voting and participation.
    activism = (
        rng.normal(size=n)
        + activism_shift[channel]
        + 0.25 * capital
        + 0.2 * journalist
        + 0.2 * (sector == sectors.index("arts"))
    )
    parties = codes("vote_2021")
    decile = np.minimum(_ordered(activism, np.full(10, 0.1)), 9)
    z = (np.arange(10) - 4.5) / 4.5
    slope = {"ur": -1.5, "kprf": 0.2, "ldpr": -1.0, "sr": -0.3, "new_people": -0.4}
    slope |= {"yabloko": 0.7, "no_vote": -1.0, "refuse": -0.4}
    shift = np.outer(z, [slope.get(p, 0.0) for p in parties])
    vote = _choose(rng, _shares(t["vote_2021"], parties), decile, shift)
    d["vote_2021"] = vote
    voted = ~np.isin(vote, [parties.index("no_vote"), parties.index("refuse")])
    party_effect = np.array(
        [
            {"ur": -4.0, "ldpr": -2.5, "sr": -0.5, "new_people": -1.0, "kprf": 1.0}.get(p, 0.3)
            for p in parties
        ]
    )
    score = party_effect[vote] + 0.8 * activism + rng.logistic(size=n)
    d["smart_voting"] = _yes_no(_top(score, t["smart_voting"]["yes"], voted))

    options = [c for c in codes("activity_before") if c != "none"]
    before: dict[str, np.ndarray] = {}
    after: dict[str, np.ndarray] = {}
    age_c = (age - median) / 10
    extra = {"posts": -0.2 * age_c, "rallies": -0.2 * age_c + 0.2 * male, "ngos": 0.3 * wealth}
    loading = {"petitions": 1.5, "posts": 1.5, "rallies": 1.6, "refugees": 0.8, "emigrants": 0.8}
    for o in options:
        score = loading.get(o, 1.2) * activism + extra.get(o, 0.0) + rng.logistic(size=n)
        before[o] = _top(score, t["activity_before"][o])
    # Habits carry over: those who rallied before the invasion make up most of
    # those rallying after it.
    carry = {"petitions": 2.0, "posts": 2.5, "rallies": 3.5, "refugees": 1.5, "emigrants": 1.5}
    for o in options:
        score = (
            1.1 * activism
            + carry.get(o, 2.5) * before[o]
            + extra.get(o, 0.0)
            + rng.logistic(size=n)
        )
        after[o] = _top(score, t["activity_after"][o])
    for name, sets in (("activity_before", before), ("activity_after", after)):
        for o in options:
            d[f"{name}/{o}"] = sets[o]
        d[f"{name}/none"] = ~np.any([sets[o] for o in options], axis=0)
    n_activities = np.sum([before[o] for o in options] + [after[o] for o in options], axis=0)

    p = t["pressure"]
    talks = _top(
        0.7 * activism + 1.2 * employed + 0.5 * before["rallies"] + rng.logistic(size=n), p["talks"]
    )
    warnings = _top(
        0.5 * activism + 1.5 * employed + 0.4 * before["posts"] + rng.logistic(size=n),
        p["warnings"],
    )
    threats = _top(0.8 * activism + 0.8 * before["posts"] + rng.logistic(size=n), p["threats"])
    detention = _top(
        0.6 * activism + 2.5 * before["rallies"] + rng.logistic(size=n), p["detention"]
    )
    search = _top(
        0.8 * activism + 1.5 * detention + 1.2 * journalist + rng.logistic(size=n), p["search"]
    )
    pressure = {"talks": talks, "warnings": warnings, "threats": threats}
    pressure |= {"detention": detention, "search": search}
    for o, v in pressure.items():
        d[f"pressure/{o}"] = v
    any_pressure = np.any(list(pressure.values()), axis=0)
    d["pressure/none"] = ~any_pressure

    risk_codes = codes("prosecution_risk")
    risk_order = ("no", "unsure", "yes")  # lowest latent risk first
    score = (
        0.8 * activism
        + 1.5 * detention
        + 1.5 * search
        + 0.8 * threats
        + 0.5 * journalist
        + rng.normal(size=n)
    )
    risk = _ordered(score, _shares(t["prosecution_risk"], risk_order))
    d["prosecution_risk"] = np.array([risk_codes.index(c) for c in risk_order])[risk]
    at_risk = risk == risk_order.index("yes")

    f = t["fears"]
    fears = {
        "persecution": _top(
            0.35 * n_activities + 0.5 * any_pressure + rng.logistic(size=n), f["persecution"]
        ),
        "conscription": _top(
            2.5 * male
            + 1.2 * young
            + 0.6 * ((age >= 35) & (age < 50))
            + 1.5 * mobilisation
            + rng.logistic(size=n),
            f["conscription"],
        ),
        "medicines": _top(2.5 * health + 0.3 * age_c + rng.logistic(size=n), f["medicines"]),
        "prosecution": _top(
            2.5 * at_risk + 0.8 * detention + 0.8 * search + rng.logistic(size=n), f["prosecution"]
        ),
    }
    for o, v in fears.items():
        d[f"fears/{o}"] = v
    d["fears/none"] = ~np.any(list(fears.values()), axis=0)

    score = (
        1.0
        * np.isin(dest, [dest_ix.get(c, -1) for c in ("EE", "LV", "LT", "DE", "CZ", "PL", "FI")])
        + 0.6 * (dest == dest_ix.get("GE", -1))
        - 0.3 * in_dest["asia"]
        + rng.logistic(size=n)
    )
    faced = _top(score, t["discrim_faced"]["yes"])
    d["discrim_faced"] = _yes_no(faced)

    # Expectations: one latent gloom, lower in IT, higher in healthcare.
    # "Living", "discrimination" and "work" agree when gloomy; "politics will
    # improve" and "I can provide for my family" disagree when gloomy.
    gloom = (
        rng.normal(size=n)
        + gloom_shift[channel]
        - 0.7 * it
        + 1.0 * health
        - 0.3 * wealth
        + 0.3 * ~employed
    )
    scale_codes = codes("exp_living")
    points = [c for c in scale_codes if c != "dk"]
    gloomy_agrees = {
        "exp_living": (1.0 * gloom, True),
        "exp_politics": (0.6 * gloom, False),
        "exp_discrim": (0.5 * gloom + 1.0 * faced, True),
        "exp_work": (0.9 * gloom + 0.4 * ~employed, True),
        "exp_family": (0.9 * gloom - 0.4 * wealth + 0.4 * ~employed, False),
    }
    for name, (latent, agrees) in gloomy_agrees.items():
        dk = _top(rng.random(n), t[name]["dk"])
        order = points if agrees else points[::-1]
        cat = _ordered(latent + rng.normal(size=n), _shares(t[name], order), ~dk)
        as_code = np.array([scale_codes.index(c) for c in order])[cat]
        d[name] = np.where(dk, scale_codes.index("dk"), as_code)

    # -- skips, non-response and the planted respondents ---------------------------
    missing = {name: rng.random(n) < rate for name, rate in NONRESPONSE.items()}
    missing["sector"] = ~employed
    missing["smart_voting"] = ~voted | missing["smart_voting"]

    other_field = sector == sectors.index("other")
    specify = rng.integers(0, len(OTHER_FIELDS), n)
    missing["sector_other"] = ~other_field | (rng.random(n) < OTHER_BLANK)

    genuine = np.exp(rng.normal(np.log(780.0), 0.3, n)) + 6.0 * n_activities + 40.0 * employed
    typical = float(np.median(genuine))
    # A genuine respondent is never as fast as a planted speeder.
    duration = np.round(np.maximum(genuine, 0.45 * typical))

    n_speed, n_flat, n_dup = (round(rate * n) for rate in PLANTED.values())
    order = rng.permutation(n)
    speeders = np.sort(order[:n_speed])
    flat = np.sort(order[n_speed : n_speed + n_flat])
    pairs = order[n_speed + n_flat : n_speed + n_flat + 2 * n_dup].reshape(-1, 2)
    originals, copies = pairs.min(axis=1), pairs.max(axis=1)

    duration[speeders] = np.round(typical * rng.uniform(0.08, 0.3, n_speed))
    same = rng.integers(0, len(points), n_flat)
    for name in EXPECTATIONS:
        d[name][flat] = np.array([scale_codes.index(c) for c in points])[same]
        missing[name][flat] = False
    for name in MULTIPLE:
        for c in q[name].choices:
            d[f"{name}/{c.code}"][flat] = not c.exclusive
        if name in missing:
            missing[name][flat] = False

    # The attention check asks for "2": genuine respondents read it, a straightliner
    # gives their one answer, a speeder a random one. Its own random stream, so the
    # item changed no other answer of the example.
    check_rng = np.random.default_rng([seed, 17])
    d["exp_check"] = np.full(n, scale_codes.index("2"))
    d["exp_check"][speeders] = check_rng.integers(0, len(scale_codes), n_speed)
    d["exp_check"][flat] = np.array([scale_codes.index(c) for c in points])[same]

    # Duplicates: another respondent's answers and time, under a new id.
    d["duration_sec"] = duration
    d["sector_other"] = specify
    for values in (*d.values(), *missing.values()):
        values[copies] = values[originals]

    # -- the canonical table --------------------------------------------------------
    width = max(6, len(str(n)))
    ids = pl.select(
        pl.format("synthetic-{}", pl.int_range(1, n + 1).cast(pl.String).str.zfill(width))
    ).to_series()
    columns: dict[str, pl.Series] = {
        "respondent_id": ids,
        "duration_sec": pl.Series(duration, dtype=pl.Float64),
    }
    for question in q.answerable:
        name = question.name
        skip = pl.Series(missing.get(name, np.zeros(n, dtype=bool)))
        if question.type == "multiple":
            for c in question.choices:
                col = question.option_column(c.code)
                columns[col] = pl.Series(d[col]).set(skip, None)
        elif question.type == "integer":
            columns[name] = pl.Series(d[name], dtype=pl.Int64).set(skip, None)
        else:
            labels = dest_codes if question.type == "country" else question.codes
            picks = pl.Series(d[name]).set(skip, None)
            columns[name] = pl.Series(labels, dtype=pl.String).gather(picks)
        if question.other_column:
            col = question.other_column
            picks = pl.Series(d[col]).set(pl.Series(missing[col]), None)
            columns[col] = pl.Series(OTHER_FIELDS, dtype=pl.String).gather(picks)
    responses = pl.DataFrame([columns[c].alias(c) for c in q.columns])

    rows = np.concatenate([speeders, flat, copies])
    of = np.concatenate([np.full(n_speed + n_flat, -1), originals])
    order = np.argsort(rows, kind="stable")
    key = pl.DataFrame(
        {
            "respondent_id": ids.gather(rows[order]),
            "planted": pl.Series(
                ["speeder"] * n_speed + ["straightliner"] * n_flat + ["duplicate"] * n_dup,
                dtype=pl.String,
            ).gather(order),
            "duplicate_of": ids.gather(pl.Series(of[order]).set(pl.Series(of[order] < 0), None)),
        }
    )
    return responses, key


def write_example(path: str | Path, n: int = 2000, seed: int = 1) -> list[Path]:
    """Write the synthetic responses to ``path`` (CSV) and the answer key beside it.

    The key goes to ``<stem>.answer_key.csv`` in the same folder; nothing else
    is written. A ``path`` that is a folder, or has no extension, gets
    ``data.csv`` inside it. The data are written by :func:`volna.io.write`:
    multiple-choice options 1/0, unanswered cells empty, UTF-8. Returns the
    two paths.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> [p.name for p in write_example(folder / "data.csv", n=200)]
    ['data.csv', 'data.answer_key.csv']
    >>> [p.relative_to(folder).as_posix() for p in write_example(folder / "study", n=200)]
    ['study/data.csv', 'study/data.answer_key.csv']
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / "data.csv"
    from volna.io import write  # the CSV convention lives in one place

    responses, key = generate(n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(responses, path, _questionnaire())
    key_path = path.with_name(f"{path.stem}.answer_key.csv")
    key.write_csv(key_path)
    return [path, key_path]
