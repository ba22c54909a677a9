# Every target creates and uses the virtual environment in .venv; nothing is installed globally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FP := $(VENV)/bin/featureplane
STAMP := $(VENV)/.installed-stamp

.PHONY: install kafka-jars chromium lint test unit integration soak demo down status clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "featureplane needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The Kafka broker's jars, from Maven Central into .state/kafka (once; later runs reuse them).
kafka-jars: $(STAMP)
	$(PY) -m deploy.kafka fetch

# Headless Chromium (Debian's package) opens the replay report in tests/integration/test_replay.py;
# installed here when missing and we are root (as in CI), otherwise we say how.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "the tests need headless Chromium: sudo apt-get install --no-install-recommends chromium"; exit 1; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: install kafka-jars chromium lint
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

integration: install kafka-jars chromium
	$(PY) -m pytest tests/integration

# The crash test's long variant (tests/integration/test_crash.py): more events, more kills per component.
# Recovery times are printed and written to recovery.json in the test's tmp dir.
soak: install kafka-jars
	FEATUREPLANE_SOAK=1 $(PY) -m pytest -s -p no:cacheprovider tests/integration/test_crash.py --timeout 3600

demo: install kafka-jars
	$(FP) up
	$(FP) apply examples/quickstart --workspace prod
	$(PY) examples/quickstart/demo.py
	$(FP) audit verify
	@echo "featureplane is still running; stop it with: make down"

down: $(STAMP)
	$(FP) down

status: $(STAMP)
	$(FP) status

clean: down
	rm -rf .state

# Benchmarks on this machine, side by side with Feast (installed on first use into .state/feast-venv):
# medians of repeated runs, results in bench/results/latest.{json,md}; under ~20 minutes.
# One benchmark or a smoke run: make bench BENCH_ARGS="--only online --quick"
BENCH_ARGS ?=
bench: install kafka-jars
	$(PY) -m bench.run $(BENCH_ARGS)
