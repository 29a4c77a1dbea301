# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD := build

.PHONY: install demo demo-analyze test clean-install bench corpus bench-corpus profile clean mct-venv

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(BUILD)
	@test -f $(BUILD)/digits_cnn.keras || { echo "training the demo model (a small CNN on scikit-learn's digits)..."; \
		$(PY) -m recommender.demo $(BUILD) > $(BUILD)/demo_build.log 2>&1 || { cat $(BUILD)/demo_build.log; exit 1; }; }
	$(VENV)/bin/recommend $(BUILD)/digits_cnn.keras --data $(BUILD)/digits.npz --floor-relative 0.99 \
		--out $(BUILD)/digits_cnn.small.tflite --report $(BUILD)/report.html --force

# The analyzer alone on a MobileNetV2 (0.35, 96x96, full int8) built with the converter.
demo-analyze: $(STAMP)
	@mkdir -p $(BUILD)
	@test -f $(BUILD)/demo_mobilenet_v2.tflite || { echo "building MobileNetV2 0.35 96x96 int8 with the TFLite converter..."; \
		$(PY) -m tests.zoo demo_mobilenet_v2 $(BUILD)/demo_mobilenet_v2.tflite > $(BUILD)/demo_build.log 2>&1 || { cat $(BUILD)/demo_build.log; exit 1; }; }
	$(VENV)/bin/analyze $(BUILD)/demo_mobilenet_v2.tflite --target all --graph $(BUILD)/demo_mobilenet_v2.graphml

test: $(STAMP)
	$(PY) -m pytest -q tests

# The wheel in a fresh virtual environment, from the registry without the lock file and
# without TensorFlow: analyze, --predict-latency, search and recommend on a .tflite.
clean-install: $(STAMP)
	.ci/clean_install $(PY)

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze.py
	$(PY) benchmarks/bench_large_model.py
	$(PY) benchmarks/bench_savedmodel.py
	$(PY) benchmarks/bench_sensitivity.py
	$(PY) benchmarks/bench_latency.py --sets keras
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_recommend.py

# The real-model corpus (benchmarks/corpus): wheels from the registry, files of repository
# snapshots (a mirror folder, see benchmarks/corpus/README.md); a source that is not here is
# reported and skipped. Then the yardstick over every model (about an hour on 2 cores).
corpus: $(STAMP)
	-$(PY) benchmarks/corpus/fetch.py

bench-corpus: corpus
	$(PY) benchmarks/bench_corpus.py --json build/bench_corpus.json
	$(PY) benchmarks/bench_latency.py
	$(PY) benchmarks/bench_import_profile.py

# Remake the shipped latency profile on this machine: the full sweep plus every op of the
# corpus models the interpreter runs (about 5 minutes on 2 cores; run it on an idle machine).
profile: corpus
	$(VENV)/bin/analyze calibrate-latency --force --out analyzer/tables/latency/generic_x86_64.json \
		--name "generic x86-64 ($$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), 1 thread, XNNPACK)" \
		--add-models $$($(PY) -c "import json, os; c = os.path.expanduser('~/.cache/compression-advisor/corpus'); \
		print(' '.join(os.path.join(c, m['file']) for m in json.load(open('benchmarks/corpus/manifest.json'))['models'] \
		if m.get('interpreter') == 'runs'))")

# Model Compression Toolkit for bench_search.py's peer column: its own venv (MCT 2.6 runs on
# PyTorch here; its Keras path needs TensorFlow <= 2.15). Large: PyTorch and its wheels.
mct-venv:
	test -x benchmarks/.mct-venv/bin/python || $(PYTHON) -m venv benchmarks/.mct-venv
	benchmarks/.mct-venv/bin/pip install --quiet model-compression-toolkit==2.6.1 torch torchvision

clean:
	rm -rf $(BUILD) .pytest_cache
