"""volna: survey research on emigration waves, from questionnaire to honest report.

>>> import volna
>>> q = volna.Questionnaire.load(volna.example_path("okrussians", "questionnaire.yaml"))
>>> q.default_language
'ru'
"""

from volna.errors import (
    ExpressionError,
    QuestionnaireError,
    ReadError,
    UnsupportedFormError,
    VolnaError,
    WriteError,
)
from volna.examples import example_path
from volna.questionnaire import Choice, Paradata, Question, Questionnaire, Section

__version__ = "0.1.0"


def __getattr__(name: str):
    # Reading and validation pull in polars and pyreadstat; load them on first
    # use so that `volna --help` and questionnaire work stay quick.
    if name in ("read", "write"):
        from volna import io

        return getattr(io, name)
    if name in ("SurveyDesign", "DesignError"):
        from volna import design

        return getattr(design, name)
    if name == "Estimates":
        from volna.results import Estimates

        return Estimates
    if name in ("validate", "Problem", "ValidationReport"):
        from volna import validation as _validate

        return getattr(_validate, name)
    raise AttributeError(f"module 'volna' has no attribute {name!r}")


__all__ = [
    "Choice",
    "DesignError",
    "Estimates",
    "ExpressionError",
    "Paradata",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "ReadError",
    "Section",
    "SurveyDesign",
    "UnsupportedFormError",
    "VolnaError",
    "WriteError",
    "example_path",
    "read",
    "validate",
    "write",
]
