# Every target creates the virtual environment at .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-serve serve test models background-study mnist-model mnist-background anomaly-study openapi docs bench bench-ddp clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The service alone: ONNX Runtime, FastAPI, Redis client. No torch.
$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

# Everything: the service, the training package (torch==2.13.0) and the test tools.
$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $@ $(SERVE_STAMP)

install-serve: $(SERVE_STAMP)
install: $(DEV_STAMP)

# Serve the model repository (VAE_MODEL_REPOSITORY, default models/) on VAE_HOST:VAE_PORT (127.0.0.1:8000).
serve: $(SERVE_STAMP)
	$(PY) -m service

test: $(DEV_STAMP)
	$(PY) -m pytest -q

# Rebuild the shipped models: train, evaluate (K = 5000) and export each into models/, each with the reference.json
# of its calibration split. The richer two run on one thread, as they were built: the same figures, and four times
# faster per epoch on a busy machine. Then the background model of digits-binary and digits-binary-ratio, its graphs
# under a second name with a likelihood-ratio reference (docs/TRAINING.md, "Background models").
models: $(DEV_STAMP)
	$(PY) -m training build --preset digits --repository models --force
	$(PY) -m training build --preset digits-binary --repository models --force
	OMP_NUM_THREADS=1 $(PY) -m training build --preset digits-mog --repository models --force
	OMP_NUM_THREADS=1 $(PY) -m training build --preset digits-binary-discrete --repository models --force
	OMP_NUM_THREADS=1 $(PY) -m training build --preset digits-binary-background --repository models --force --no-baselines
	$(PY) -m training ratio --repository models --model digits-binary:1 --background digits-binary-background:1 \
		--name digits-binary-ratio --force
	$(PY) -m training report --repository models --output docs/RESULTS.md --readme README.md

# The choice of digits-binary-background's perturbation rate on validation (about 6 minutes on one core).
background-study: $(DEV_STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training background-study --preset digits-binary-background --repository models \
		--model digits-binary:1 --output runs/digits-binary-background-study.json

# Binarised MNIST (about 1.5 to 2 hours on one core of a 2-core machine; resumable: an interrupted run continues
# from runs/mnist-binary.pt where it stopped, draw for draw). DEVICE=cuda trains and evaluates on a GPU.
DEVICE ?= cpu
mnist-model: $(DEV_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m training build --preset mnist-binary --repository models --force \
		--no-baselines --resume --device $(DEVICE)
	$(PY) -m training report --repository models --output docs/RESULTS.md --readme README.md

# Issue 19's anomaly study into docs/ANOMALY.md: the validity of /score's false-positive rate, detection of
# out-of-distribution sets, and the one-class protocol of Ruff et al. (2018) on MNIST (about an hour on one core of a
# 2-core machine, most of it the ten one-class VAEs). Resumable: scores, baselines and each digit are kept under
# runs/anomaly/ and skipped when present. REPOSITORY picks the model repository it studies.
REPOSITORY ?= models
anomaly-study: $(DEV_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) bench/anomaly_study.py --repository $(REPOSITORY)

# The background model of mnist-binary, shipped with 100 of its recipe's 200 epochs (about 55 minutes on one core,
# then about 15 for K = 5000; resumable as above), and mnist-binary-ratio, mnist-binary:1's graphs with a
# likelihood-ratio reference against it.
mnist-background: $(DEV_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m training build --preset mnist-binary-background --epochs 100 \
		--repository models --force --no-baselines --resume --device $(DEVICE)
	$(PY) -m training ratio --repository models --model mnist-binary:1 --background mnist-binary-background:1 \
		--name mnist-binary-ratio --force
	$(PY) -m training report --repository models --output docs/RESULTS.md --readme README.md

# Regenerate openapi/openapi.json from the app.
openapi: $(SERVE_STAMP)
	$(PY) -m service.openapi

# Regenerate docs/CONFIGURATION.md from the settings class (service/settings.py, by service/configuration.py); a test fails when they drift.
docs: $(SERVE_STAMP)
	$(PY) -m service.configuration

bench: $(DEV_STAMP)
	$(PY) bench/serving.py

# Training throughput as one process and with 1 and 2 torchrun ranks: docs/BENCHMARKS.md, "Data-parallel training".
bench-ddp: $(DEV_STAMP)
	$(PY) bench/ddp_throughput.py

clean:
	rm -rf $(VENV) runs
