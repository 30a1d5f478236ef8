"""Response screening: speeders, straightliners, duplicates, partial completes, failed checks.

Web surveys recruited through open links attract bots and careless answers.
:func:`screen` marks them, one rule at a time, and never removes a row: every
rule adds a Boolean ``flag_<rule>`` column and a ``why_<rule>`` text saying what
was found, and ``excluded`` applies the exclusion policy declared in advance
in a rules file (schema at the top of ``examples/okrussians/screening.yaml``).
The summary says how many rows each rule flagged and how many it excluded.

The rules, each vectorised over all rows:

``speeder``
    completion time under ``fraction_of_median`` (0.5) of the median time of
    complete interviews, or under ``seconds_per_item`` (2) seconds per answered
    question; only when the questionnaire declares a ``duration`` paradata column.
``page_speed``
    a page of the form answered at under ``fraction_of_median`` (0.25) of that
    page's median seconds per answered item, or under ``seconds_per_item``
    (off by default), on at least ``at_least`` (1) pages; the reasons name the
    pages. Only when the questionnaire times its pages (``duration`` paradata
    with ``page: <section>``): a bot that fills some pages at random fills
    them fast, while its total time can look like anyone's.
``straightliner``
    a grid of scale questions (those sharing a choice list, or declared in the
    rules) answered with one value throughout (zero variance), or with a run of
    ``longest_run`` identical consecutive answers, among at least ``min_items``
    answered items ("don't know" does not count as an answer here).
``duplicate``
    a later respondent (by submission time when declared, else row) whose
    answers differ from an earlier one's on at most ``1 - agreement`` (10%) of
    the questions either answered. Candidates come from banding (split the
    questions into d + 1 bands, hash each band, compare only rows sharing a
    band: by pigeonhole every pair within d differences shares a band), so the
    search is exact and not quadratic; pairs and their groups (bot farms) are
    reported.
``careless``
    careless-responding indices (:mod:`volna.screening.careless`: longstring,
    IRV, even-odd, psychometric synonyms and antonyms, robust Mahalanobis D²,
    person fit, rare answers) computed from the questionnaire's scales and
    reverse-keyed items; flagged when at least ``at_least`` of the configured
    indices pass their cut-offs, with the reasons.
``partial``
    under ``min_share`` (50%) of the questions that were relevant to the
    respondent (the questionnaire's ``relevant`` expressions) answered.
``attention``
    an attention check (an instructed item: "to show you read this, choose
    'Tend to disagree'") not answered as expected: declared in the
    questionnaire (``attention: [codes]`` on the question) or in the rules.
``honeypot``
    a question the questionnaire marks ``honeypot: true`` (hidden from people
    by the web form) that holds an answer: only a bot fills it in.
``form``
    the web form's own flags (``volna export`` writes them in the
    ``screening_flags`` column: ``honeypot``, ``too_fast`` — submitted sooner
    after the form was issued than a person can read it —, ``no_proof_of_work``);
    ``flags`` chooses which of them count. Runs when the data have the column.
``gibberish``
    open text that is keyboard mashing, one character repeated, no vowels, or
    the same words pasted over and over.
logical rules
    any XLSForm expression over the answers, declared in the questionnaire's
    ``checks`` or named in the rules file; a row is flagged where it holds.

Attention checks, honeypots and checks declared in the questionnaire always
run: they are part of the study's design. The rules file's ``exclude`` decides
whether their flags exclude or are only reported.

>>> import polars as pl
>>> from volna import Questionnaire
>>> q = Questionnaire.loads('''
... id: demo
... paradata: [{name: duration_sec, type: duration}]
... choice_lists:
...   agree: [{code: "1", value: 1}, {code: "2", value: 2}, {code: "3", value: 3}]
... questions:
...   - {name: a, type: scale, choices: agree}
...   - {name: b, type: scale, choices: agree}
...   - {name: c, type: scale, choices: agree}
... ''')
>>> data = pl.DataFrame({"duration_sec": [100.0, 90.0, 20.0, 110.0],
...                      "a": ["1", "3", "2", "2"], "b": ["2", "3", "1", "1"],
...                      "c": ["3", "3", "1", "3"]})
>>> result = screen(data, q, ScreeningRules(straightlining=StraightliningRule(min_items=3),
...                                         duplicates=None, careless=None))
>>> result.data["flag_speeder"].to_list(), result.data["flag_straightliner"].to_list()
([False, False, True, False], [False, True, False, False])
>>> result.data["excluded"].to_list()
[False, True, True, False]
"""

from __future__ import annotations

from volna.screening.careless import careless_indices
from volna.screening.checks import _flagged_where
from volna.screening.core import ScreeningResult, screen
from volna.screening.duplicates import _empty_pairs
from volna.screening.rules import (
    BUILT_IN,
    AttentionCheck,
    CarelessRule,
    DuplicateRule,
    FormFlagsRule,
    GibberishRule,
    LogicRule,
    PageSpeedRule,
    PartialRule,
    ScreeningError,
    ScreeningRules,
    SpeederRule,
    StraightliningRule,
    parse_rules,
    read_rules,
)
from volna.screening.sensitivity import sensitivity
from volna.screening.speed import page_seconds_per_item

__all__ = [
    "BUILT_IN",
    "AttentionCheck",
    "CarelessRule",
    "DuplicateRule",
    "FormFlagsRule",
    "GibberishRule",
    "LogicRule",
    "PageSpeedRule",
    "PartialRule",
    "ScreeningError",
    "ScreeningResult",
    "ScreeningRules",
    "SpeederRule",
    "StraightliningRule",
    "_empty_pairs",
    "_flagged_where",
    "careless_indices",
    "page_seconds_per_item",
    "parse_rules",
    "read_rules",
    "screen",
    "sensitivity",
]
