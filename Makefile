# dbops — two commands for a fresh machine: `make demo` (the main job on the local stack) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# checkov and cfn-lint in their own venv: checkov pins a boto3 the functions' (requirements.txt) cannot sit beside
SCAN_VENV ?= $(VENV)-scan
export DBOPS_SCANNERS_BIN := $(abspath $(SCAN_VENV))/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)

.PHONY: venv scanners demo test lint typecheck unit integration infra-test workflow bench layers layers-lock synth clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

$(SCAN_VENV)/.installed: requirements-scan.txt
	python3 -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet -r requirements-scan.txt
	touch $@

scanners: $(SCAN_VENV)/.installed

demo: venv
	$(PY) -m local_stack.demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest tests/unit -q

integration: venv
	$(VENV)/bin/pytest tests/integration -q

test: venv scanners lint
	$(VENV)/bin/pytest -q -n 2 --dist worksteal --durations=25

infra-test: venv scanners
	$(VENV)/bin/pytest tests/infra -q

# Lambda layers without Docker, from locked wheels (layers/*.lock): pgtools-{arm64,x86_64}, python-{arm64,x86_64}
layers: venv
	$(PY) layers/builder.py build

# re-resolve the layers' wheels and rewrite their sha256 locks (after changing requirements.txt)
layers-lock: venv
	$(PY) layers/builder.py lock

# synthesize offline: the Python app, then the aws-cdk CLI (package.json) when npm is there
synth: venv
	$(PY) app.py
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && npx cdk synth --quiet; \
	else echo "npm not found: skipped npx cdk synth"; fi

clean:
	rm -rf $(VENV) $(SCAN_VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache .demo layers/build node_modules
