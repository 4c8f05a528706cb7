# Two commands do all setup on a fresh machine:
#   make demo   - train a small CNN on scikit-learn's digits under nbdiag.watch (headless: summary, findings, PNG/HTML)
#   make test   - run the test suite
# Both create .venv and install nbdiag with the CPU PyTorch wheel.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0
# CPU-only wheels when pip has to download PyTorch (never the multi-GB CUDA build).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test lab lint bench hero clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" --extra-index-url $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nbdiag demo

# As root (containers, cloud boxes) Jupyter refuses to start without --allow-root; it changes nothing otherwise.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/01_quickstart.ipynb

test: $(STAMP)
	$(BIN)/ruff check nbdiag tests benchmarks
	$(BIN)/ruff format --check nbdiag tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

# The README's dashboard images, from the quickstart notebook itself (--browser: the JupyterLab screenshot too).
hero: $(STAMP)
	$(BIN)/python docs/make_hero.py --browser

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
