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

## demo: generate the synthetic OK Russians study, validate, summarise, screen and weight it,
## then write its report (HTML, XLSX, Markdown; Russian and English) and a safe microdata release
# Weighting: The Bell's 2024 destination stock and the illustrative age x gender margin.
# The generated data (n 2000, seed 1) have respondents in every target cell, and every
# destination The Bell does not name goes to its "other" level, so no --collapse is
# needed; gender "other"/"refuse" are excluded by the margin itself (outside it, they
# keep the weight the destination margin gives them) and age and gender are required
# questions, so --missing stays "error". --compare shows what weighting changed.
demo: $(STAMP)
	$(BIN)/volna example okrussians --n 2000 --seed 1 -o $(OUT)/okrussians/data.csv
	$(BIN)/volna validate examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv
	$(BIN)/volna summary examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv
	# Screening flags the planted speeders, straightliners and duplicates and shows what
	# excluding them changes; weighting (--screening) and the report (report.yaml:
	# screening) screen first and leave the excluded respondents out.
	$(BIN)/volna screen examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv \
		--rules examples/okrussians/screening.yaml --compare plans,sector \
		--out $(OUT)/okrussians/screened.csv
	$(BIN)/volna weight $(OUT)/okrussians/data.csv \
		--questionnaire examples/okrussians/questionnaire.yaml \
		--margins examples/okrussians/margins.yaml \
		--use destination_bell_2024,age_gender_illustrative \
		--screening examples/okrussians/screening.yaml \
		--report \
		--compare destination=TR,destination=GE,sector=it,vote_2021=ur,plans=stay,fears/conscription \
		--out $(OUT)/okrussians/weighted.csv
	$(BIN)/volna report examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv \
		--config examples/okrussians/report.yaml --lang all -o $(OUT)/okrussians/report
	# A microdata release others can check: 5-anonymous on five quasi-identifiers, the
	# vote 2-diverse within every combination, paradata and the recruitment channel out,
	# free text redacted; the report says what was recoded and suppressed. Five keys on
	# 2,000 respondents cost many cells: destination, the study's key variable, is the
	# last to be blanked (--importance), so sector and origin give way first.
	$(BIN)/volna release examples/okrussians/questionnaire.yaml $(OUT)/okrussians/data.csv \
		--quasi age,gender,destination,origin,sector --sensitive vote_2021 --k 5 --l 2 \
		--importance destination -o $(OUT)/okrussians/release
	@echo "The report: $(OUT)/okrussians/report/report.ru.html and report.en.html (+ .xlsx, .md)"
	@echo "The release: $(OUT)/okrussians/release/ (data, questionnaire, codebook, report.html)"
	@echo "The data are SYNTHETIC: made up by 'volna example', not answers of real people."

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
	$(BIN)/python benchmarks/weighting.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
