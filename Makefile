# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD := build

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(BUILD)
	@test -f $(BUILD)/demo_mobilenet_v2.tflite || $(PY) -m tests.zoo demo_mobilenet_v2 $(BUILD)/demo_mobilenet_v2.tflite
	$(VENV)/bin/analyze $(BUILD)/demo_mobilenet_v2.tflite --target all --graph $(BUILD)/demo_mobilenet_v2.graphml

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze.py
	$(PY) benchmarks/bench_large_model.py

clean:
	rm -rf $(BUILD) .pytest_cache
