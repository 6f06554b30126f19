# The two set-up commands of the README: `make demo` and `make test`. Each builds or refreshes
# the virtual environment in .venv (when setup.cfg changed, or it is missing), then runs; `make test` lints
# the package first (ruff, configured in pyproject.toml) and fails on a lint error.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	MPLBACKEND=Agg $(BIN)/fastinterp demo $(ARGS)

test: $(BIN)/.installed
	$(BIN)/ruff check fastinterp bench
	MPLBACKEND=Agg $(BIN)/python -m pytest -q $(ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_get_preds.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
