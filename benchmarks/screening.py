"""Screening speed: 1,000,000 generated respondents, and the growth of the duplicate search.

Run by hand: ``.venv/bin/python benchmarks/screening.py [n]``. Prints the time to
screen ``n`` rows (default 1,000,000; target under 60 s) with the example's
rules, and the number of candidate pairs the near-duplicate search compares at
growing sizes, against n(n-1)/2 for all pairs. Measured (2 cores, with every
careless-responding index the example allows, random_answers' latent class
model included, and near duplicates within 3 of 26-27 questions, the example's
rules): 1,000,000 rows in 48.9 s, 157,200 candidates (3.1e-7 of all pairs; 8
bands of the unconditional questions, each of the 56 sets of 5 bands hashed).
Before random_answers: 45.1 s; before the indices and the 3-change duplicates:
20.4 s.
"""

from __future__ import annotations

import sys
import time

from volna import Questionnaire
from volna.examples import example_path
from volna.examples.generate_okrussians import generate
from volna.screening import screen


def main(n: int = 1_000_000) -> None:
    q = Questionnaire.load(example_path("okrussians", "questionnaire.yaml"))
    rules = example_path("okrussians", "screening.yaml")
    for size in (n // 100, n // 10, n):
        data, key = generate(n=size, seed=1)
        start = time.perf_counter()
        result = screen(data, q, rules)
        seconds = time.perf_counter() - start
        planted = key.filter(key["planted"] == "duplicate").height
        print(
            f"n={size:>9,}: {seconds:6.2f} s, {result.n_excluded:,} excluded, "
            f"{result.candidates:,} candidate pairs ({result.candidates / size:.2f} per row; "
            f"all pairs {size * (size - 1) // 2:,}), "
            f"{result.duplicate_pairs.height:,} duplicate pairs ({planted:,} planted)"
        )
    print(result.text())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
