"""The anonymous web questionnaire: form, encryption, encrypted store, export."""
