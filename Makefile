# segbench: `make bench` then `make test`. Everything below installs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# Extras installed for the bench and the tests (vision stays optional: ~5.5 GB).
EXTRAS ?= report,dev,litert,onnx,hfdatasets,depth,robustness,kernels
SUITE  ?= suites/default.yaml
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: setup bench test report clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build, so the package's `torch` requirement is already
# met and pip never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $(STAMP)

bench: setup
	$(VENV)/bin/segbench run $(SUITE) --report

test: setup
	bash scripts/install-browser.sh
	bash scripts/install-postgres.sh && bash scripts/install-history.sh $(PY)
	bash scripts/pytest-strict.sh $(PY) $(PYTEST_ARGS)

report: setup
	@latest=$$(ls -td results/*/ 2>/dev/null | grep -v baselines | head -1); \
	if [ -z "$$latest" ]; then echo "no run under results/: run 'make bench' first"; exit 1; fi; \
	$(VENV)/bin/segbench report $$latest

clean:
	find results -mindepth 1 -maxdepth 1 ! -name baselines -exec rm -rf {} +
	find reports -mindepth 1 -maxdepth 1 ! -name examples -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .benchmarks
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
