# Two commands for a newcomer: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test test-e2e test-slow lint typecheck clean fuzz chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/trio-bot run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine adapters trio_bot tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

test-e2e: $(STAMP)
	$(BIN)/pytest -m e2e

# Long runs left out of `make test` (marked slow): a simulated day under several schedulings.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow

# The fuzz suite with thousands of examples per property instead of the suite's few hundred.
fuzz: $(STAMP)
	TRIO_BOT_FUZZ=1 $(BIN)/pytest -m fuzz

# 50 crash trials (seeds 100-149, SQLite and PostgreSQL): a live run against the local exchange is
# killed with SIGKILL at named moments (intent stored, entry sent, entry filled, stop placed, stop
# moved, position closed), restarted, stopped with SIGINT; after each restart the exchange and the
# store must agree (tests/test_crash.py). Then 50 in paper mode (seeds 200-249, three kills each at
# random moments, SQLite and PostgreSQL; tests/test_crash_paper.py). About half an hour.
chaos: $(STAMP)
	$(BIN)/pytest -m chaos -p no:cacheprovider tests/test_crash.py tests/test_crash_paper.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
