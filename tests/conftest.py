"""Shared test setup: reproducible property tests, and designs on R's reference data."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from reference_data import read_reference
from volna.design import SurveyDesign

# The suite's verdict is reproducible: property tests draw the same examples on every
# machine and every run, and keep no database of past failures, so a pass or a failure on
# CI is one a developer can replay. `HYPOTHESIS_PROFILE=explore` draws new random examples
# each run to look for failures nobody has met yet (make test-latest and test-lowest).
settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))


@pytest.fixture(scope="session")
def clus1() -> SurveyDesign:
    """R: svydesign(id=~dnum, weights=~pw, data=apiclus1, fpc=~fpc)."""
    return SurveyDesign.from_frame(
        read_reference("apiclus1.csv"), ids="dnum", weights="pw", fpc="fpc"
    )


@pytest.fixture(scope="session")
def strat() -> SurveyDesign:
    """R: svydesign(id=~1, strata=~stype, weights=~pw, data=apistrat, fpc=~fpc)."""
    return SurveyDesign.from_frame(
        read_reference("apistrat.csv"), strata="stype", weights="pw", fpc="fpc"
    )


@pytest.fixture(scope="session")
def clus2() -> SurveyDesign:
    """R: svydesign(id=~dnum+snum, fpc=~fpc1+fpc2, data=apiclus2)."""
    return SurveyDesign.from_frame(
        read_reference("apiclus2.csv"), ids=["dnum", "snum"], fpc=["fpc1", "fpc2"]
    )


@pytest.fixture(scope="session")
def nhanes() -> SurveyDesign:
    """R: svydesign(id=~SDMVPSU, strata=~SDMVSTRA, weights=~WTMEC2YR, nest=TRUE, data=nhanes)."""
    return SurveyDesign.from_frame(
        read_reference("nhanes.csv"),
        ids="SDMVPSU",
        strata="SDMVSTRA",
        weights="WTMEC2YR",
        nest=True,
    )
