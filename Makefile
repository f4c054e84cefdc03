# Every target creates the virtual environment at .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install models test baselines clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

# Rebuild the shipped models: train, evaluate (K = 5000) and export each into models/.
models: $(STAMP)
	$(PY) -m training build --preset digits --repository models --force
	$(PY) -m training build --preset digits-binary --repository models --force
	$(PY) -m training report --repository models --output docs/RESULTS.md --readme README.md

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
