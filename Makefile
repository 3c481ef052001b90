# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make demo   create .venv, install the locked dependencies, generate the demo data,
#               materialize every asset, print where the results are
#   make test   the same set-up, then the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export PRODUCT_ATTRS_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(PRODUCT_ATTRS_DATA_DIR)/dagster_home
PYTEST_ARGS ?=

.PHONY: venv demo test test-all mutation browser node-deps shelf-app postgres dagster-home ui mlflow-ui sql bench lock clean-data

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,sql]'
	touch $@

dagster-home: venv
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m product_attrs.automation catalog

demo: venv dagster-home node-deps
	$(BIN)/python -m product_attrs.sample_data --out $(PRODUCT_ATTRS_DATA_DIR)/demo
	$(BIN)/dagster asset materialize -m product_attrs.definitions --select '*' --partition catalog
	$(BIN)/python -m product_attrs.report

test: venv browser node-deps postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

browser:
	scripts/install_browser.sh || echo "could not install chromium: the UI tests will skip"

# node/npm (Debian packages when absent) and the shelf app's locked onnxruntime-web (npm ci).
node-deps:
	scripts/install_node_deps.sh || echo "could not install node/npm or onnxruntime-web: the shelf app's browser tests will skip"

# The shelf app: trains the detector first when there is no champion yet, exports the champion to ONNX,
# builds the static app under $(PRODUCT_ATTRS_DATA_DIR)/shelf_app (the asset `shelf_app`) and serves it
# with the cross-origin isolation headers WASM threads need: http://localhost:$(SHELF_PORT)/
SHELF_PORT ?= 8765
shelf-app: venv dagster-home node-deps
	test -d $(PRODUCT_ATTRS_DATA_DIR)/demo || $(BIN)/python -m product_attrs.sample_data --out $(PRODUCT_ATTRS_DATA_DIR)/demo
	test -f $(PRODUCT_ATTRS_DATA_DIR)/models/product_detector/CHAMPION || \
	  $(BIN)/dagster asset materialize -m product_attrs.definitions --select 'detection_dataset,product_detector'
	$(BIN)/dagster asset materialize -m product_attrs.definitions --select 'product_detector_onnx,shelf_app'
	$(BIN)/python -m product_attrs.shelf_app.serve --port $(SHELF_PORT)

# The lake's PostgreSQL-catalog tests start their own throw-away server from Debian's package.
postgres:
	scripts/install_postgres.sh || echo "could not install PostgreSQL: the PostgreSQL catalog tests will skip"

test-all: venv browser node-deps postgres
	$(BIN)/python -m pytest -m '' --hypothesis-profile=deep $(PYTEST_ARGS)

mutation: venv
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

ui: venv dagster-home
	$(BIN)/dagster dev -m product_attrs.definitions

# A SQL session on the lake, attached read-only (Harlequin); `make sql Q="SELECT ..."` prints one query's result.
sql: venv
	$(BIN)/python -m product_attrs.warehouse.sql_session $(if $(Q),-c "$(Q)")

mlflow-ui: venv
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(PRODUCT_ATTRS_DATA_DIR)/mlflow/mlflow.db

bench: venv
	$(BIN)/python bench/bench_ingest.py

lock: venv
	( echo "# Locked versions for a reproducible install: pip install -c requirements.lock -e '.[dev,sql]'"; \
	  echo "# Regenerate with: make lock"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -i '^product.attrs' ) > requirements.lock

# Empties the data root, refusing (exit 2) an empty PRODUCT_ATTRS_DATA_DIR, /, the repository, $HOME and any
# folder without the marker that `make dagster-home` writes. Standard library only: no venv needed.
clean-data:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) -m product_attrs.data_root clean "$$PRODUCT_ATTRS_DATA_DIR"
