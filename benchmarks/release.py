"""Speed of a safe release: 100,000 synthetic respondents, 6 quasi-identifiers.

Run by hand: ``.venv/bin/python benchmarks/release.py [n]``. Prints the time of each
stage (risk, recoding, suppression, redaction) run on its own, then of the whole
pipeline (``volna.release.protect.release``: risk before and after, recoding,
suppression, redaction, checks, shuffle, report), and the peak resident memory.

Measured 2026-11-27 (2 cores, machine otherwise idle): risk 0.14 s, recoding 0.03 s,
suppression 0.76 s (62,254 cells), redaction of 2,964 texts 1.74 s including loading
natasha's models, the whole release 4.0 s (target 30 s), peak 353 MB. On the same
machine shared with four other jobs: 14.97 s in all, 11.96 s of it redaction.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import polars as pl

from volna import Questionnaire
from volna.release import recode as rc
from volna.release.protect import release
from volna.release.redact import Redactor
from volna.release.risk import measure
from volna.release.suppress import suppress_to_k

REGIONS = [f"r{i:02d}" for i in range(20)]
SECTORS = [f"s{i}" for i in range(10)]
COUNTRIES = ["GE", "AM", "TR", "RS", "KZ", "IL", "DE", "ME", "AE", "US", "FR", "PL", "LV", "FI"]

QUESTIONNAIRE = f"""
id: bench
paradata: [{{name: rid, type: id}}, {{name: took, type: duration}}]
questions:
  - {{name: age, type: integer, min: 18, max: 90}}
  - {{name: gender, type: single, choices: [{{code: f}}, {{code: m}}, {{code: other}}]}}
  - {{name: destination, type: country}}
  - {{name: region, type: single, choices: [{", ".join(f"{{code: {r}}}" for r in REGIONS)}]}}
  - {{name: sector, type: single, choices: [{", ".join(f"{{code: {s}}}" for s in SECTORS)}]}}
  - name: education
    type: single
    choices: [{{code: e1}}, {{code: e2}}, {{code: e3}}, {{code: e4}}, {{code: e5}}]
  - {{name: vote, type: single, choices: [{{code: a}}, {{code: b}}, {{code: c}}, {{code: d}}]}}
  - {{name: note, type: text}}
"""

TEXTS = [
    "Работал менеджером проектов в небольшой компании в Екатеринбурге, логистика.",
    "Фрилансер, дизайн интерфейсов, иногда преподавал в онлайн-школе.",
    "I worked as a freelance translator for a small agency, technical documents.",
    "Юрист в НКО, помогал задержанным на митингах вместе с Иваном Петровым.",
    "Пишите мне: +7 912 345 67 89 или @some_handle, ivan@mail.ru",
    "My friend John Smith helped me find a flat in Tbilisi.",
]


def synthetic(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)

    def skewed(codes: list[str]) -> np.ndarray:
        p = 1.0 / np.arange(1, len(codes) + 1)
        return rng.choice(codes, n, p=p / p.sum())

    # about 3% of respondents write something; each answer is made distinct
    writes = rng.random(n) < 0.03
    notes = [f"{TEXTS[i % len(TEXTS)]} ({i})" if w else None for i, w in enumerate(writes.tolist())]
    return pl.DataFrame(
        {
            "rid": [f"id{i}" for i in range(n)],
            "took": rng.uniform(60, 3600, n),
            "age": np.clip(rng.normal(36, 11, n).round(), 18, 90).astype(np.int64),
            "gender": rng.choice(["f", "m", "other"], n, p=[0.49, 0.49, 0.02]),
            "destination": skewed(COUNTRIES),
            "region": skewed(REGIONS),
            "sector": skewed(SECTORS),
            "education": skewed(["e1", "e2", "e3", "e4", "e5"]),
            "vote": rng.choice(["a", "b", "c", "d"], n),
            "note": notes,
        }
    )


def main(n: int = 100_000) -> None:
    quasi = ["age", "gender", "destination", "region", "sector", "education"]
    frame = synthetic(n)
    q = Questionnaire.loads(QUESTIONNAIRE)
    print(f"{n} rows, {len(quasi)} quasi-identifiers, {frame['note'].drop_nulls().len()} texts")

    t = time.perf_counter()
    before = measure(frame, quasi, k=5, sensitive=["vote"], min_l=2)
    t_risk = time.perf_counter() - t
    print(f"risk (before):      {t_risk:6.2f} s  ({before.violations[5]} violate k=5)")

    t = time.perf_counter()
    recoded = frame
    for var in quasi:
        if var == "age":
            new, _ = rc.band(frame["age"], rc.default_breaks(frame["age"], 18), min_count=1000)
        else:
            new, _ = rc.merge_rare(frame[var], 1000)
        recoded = recoded.with_columns(new)
    t_recode = time.perf_counter() - t
    print(f"recode:             {t_recode:6.2f} s")

    t = time.perf_counter()
    _, mask = suppress_to_k(recoded, quasi, 5, sensitive=["vote"], min_l=2)
    t_suppress = time.perf_counter() - t
    print(f"suppression:        {t_suppress:6.2f} s  ({int(mask.sum().sum_horizontal()[0])} cells)")

    t = time.perf_counter()
    _, counts = Redactor().redact(frame["note"].to_list())
    t_redact = time.perf_counter() - t
    print(f"redaction:          {t_redact:6.2f} s  (incl. loading natasha; {dict(counts)})")

    t = time.perf_counter()
    out = release(frame, q, quasi=quasi, sensitive=["vote"], k=5, l=2, seed=1)
    t_total = time.perf_counter() - t
    after = out.report["risk_after"]
    print(
        f"release() total:    {t_total:6.2f} s  (violations k=5 after: {after['violations']['5']},"
        f" cells suppressed: {out.report['suppression']['cells']})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS):  {peak:6.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
