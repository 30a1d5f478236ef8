# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := out

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: generate the synthetic OK Russians study, validate it, summarise it
demo: $(STAMP)
	$(BIN)/volna example okrussians --n 2000 --seed 1 -o $(OUT)/okrussians/data.csv
	$(BIN)/volna validate examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv
	$(BIN)/volna summary examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv

## test: lint and the whole test suite
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## bench: speed and memory against named peers (svy from the bench extra; R if installed)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/read_validate.py --rows 1000000
	$(BIN)/python benchmarks/estimate.py --rows 1000000

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
