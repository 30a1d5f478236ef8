"""Designs on R's reference data shared by the estimation tests (designs are immutable)."""

from __future__ import annotations

import pytest

from reference_data import read_reference
from volna.design import SurveyDesign


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
