# The two commands a fresh machine needs: `make demo` and `make test`.
#
# Installs are locked: uv.lock holds the exact version and hashes of every package, for
# every platform and Python volna supports, and `uv sync --locked` installs exactly those
# into .venv (and stops if pyproject.toml changed without a new lock). uv itself is the
# one tool installed before the lock, pinned by hash in tools/uv.txt, into .tools/.
#   make lock          refresh uv.lock to the newest versions pyproject.toml allows
#   make test-latest   the suite against the newest versions (.venv-latest; lock untouched)
#   make test-lowest   the suite against pyproject.toml's lower bounds (.venv-lowest)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
OUT := out
# uv uses the machine's Python (>= 3.11), never one it downloads
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test lint format bench clean lock test-latest test-lowest versions

$(UV): tools/uv.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r tools/uv.txt
	touch $(UV)

## install: .venv holds exactly the locked versions (uv sync is exact: it also removes what
## the lock does not list, e.g. the bench extra); a no-op in a fraction of a second
install: $(UV)
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet

## demo: generate the synthetic OK Russians study, validate, summarise, screen and weight it,
## then write its report (HTML, XLSX, Markdown; Russian and English) and a safe microdata release
# Weighting: The Bell's 2024 destination stock and the illustrative age x gender margin.
# The generated data (n 2000, seed 1) have respondents in every target cell, and every
# destination The Bell does not name goes to its "other" level, so no --collapse is
# needed; gender "other"/"refuse" are excluded by the margin itself (outside it, they
# keep the weight the destination margin gives them) and age and gender are required
# questions, so --missing stays "error". --compare shows what weighting changed.
demo: install
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

## test: lint and the whole test suite, in the locked environment
test: install
	@$(MAKE) --no-print-directory versions
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## bench: speed and memory against named peers (svy from the bench extra; R if installed)
bench: install
	$(UV) sync --locked --extra dev --extra bench --python $(PYTHON) --quiet
	$(BIN)/python benchmarks/read_validate.py --rows 1000000
	$(BIN)/python benchmarks/estimate.py --rows 1000000
	$(BIN)/python benchmarks/weighting.py

## lock: re-resolve uv.lock to the newest versions pyproject.toml allows (then run make test)
lock: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

## test-latest / test-lowest: the suite (no lint: that follows the locked ruff) against the
## newest versions, and against the lower bounds pyproject.toml promises; neither touches
## uv.lock or .venv, so upstream breakage is seen here before a user sees it
test-latest: $(UV)
	$(UV) venv --quiet --clear --python $(PYTHON) .venv-latest
	$(UV) pip install --quiet --python .venv-latest --upgrade --resolution highest -e '.[dev]'
	$(MAKE) --no-print-directory versions BIN=.venv-latest/bin
	HYPOTHESIS_PROFILE=explore .venv-latest/bin/pytest -p no:cacheprovider

test-lowest: $(UV)
	$(UV) venv --quiet --clear --python $(PYTHON) .venv-lowest
	$(UV) pip install --quiet --python .venv-lowest --resolution lowest-direct -e '.[dev]'
	$(MAKE) --no-print-directory versions BIN=.venv-lowest/bin
	HYPOTHESIS_PROFILE=explore .venv-lowest/bin/pytest -p no:cacheprovider

## versions: what an environment runs (Python, the numerical stack, its BLAS)
versions:
	@$(BIN)/python -c "import sys, numpy, scipy, polars, pandas, pyarrow; \
	print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| scipy', \
	scipy.__version__, '| polars', polars.__version__, '| pandas', pandas.__version__, \
	'| pyarrow', pyarrow.__version__, '| BLAS', \
	numpy.show_config('dicts')['Build Dependencies']['blas'].get('version'))"

clean:
	rm -rf $(VENV) .venv-latest .venv-lowest $(TOOLS) $(OUT) .pytest_cache .ruff_cache
