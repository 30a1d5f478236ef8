"""The questionnaire: the model, volna's YAML format and XLSForm import/export."""

from volna.questionnaire.model import (
    CHOICE_TYPES,
    QUESTION_TYPES,
    Check,
    Choice,
    Pair,
    Paradata,
    Question,
    Questionnaire,
    Section,
)

__all__ = [
    "CHOICE_TYPES",
    "QUESTION_TYPES",
    "Check",
    "Choice",
    "Pair",
    "Paradata",
    "Question",
    "Questionnaire",
    "Section",
]
