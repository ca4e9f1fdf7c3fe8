# zhixing — one Makefile, two entry points: `make quickstart` and `make test`.
# Every step installs what it needs into .venv, so a fresh machine (and CI) needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test test-all lint bench docs docs-serve clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch lies on disk; naming it first keeps pip from pulling a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# The browser tests (tests/serve/test_browser.py) drive the system Chromium through Playwright, which
	# must never download a browser of its own; a fresh (root) machine gets it from apt.
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || \
		echo "note: could not install chromium (not root?); the browser tests will be skipped"
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/zhixing quickstart

lint: $(STAMP)
	$(VENV)/bin/ruff check zhixing tests benchmarks tools

test: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q

# The bilingual guide and reference (mkdocs.yml): built into site/ with --strict, or served on :8000.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build site docs/source *.egg-info .pytest_cache .ruff_cache
