# The course's two commands (see README.md):
#   make demo   set up .venv if needed, then run the course notebooks headless on offline sources -> output/
#   make test   set up .venv if needed, check notebooks/library sync and lint (ruff), run the notebooks (as make demo), build the docs, run pytest
#   make docs   the docs site from make demo's executed notebooks -> _docs/html/index.html
#   make demo TRAIN=1   the same, with the train-it-yourself cells run too (they train the cpu presets: about an hour)
#   make test-lowest  the library's tests (pytest) with every dependency at the lowest version pyproject.toml declares
#   make models  retrain every model course_lib ships, from scratch, into course_lib/pretrained/ (about an hour on 2 cores)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= output
# torch is installed first and alone, so no other package can pull a (several-GB) CUDA build.
# On a Linux laptop without a GPU add: TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# The install stamp is named after the content of what it installs: nbdev-export rewrites pyproject.toml with the same
# content (a new mtime), which must not reinstall everything; a real change to the dependencies or the lock must.
INSTALL_HASH := $(shell { cat pyproject.toml requirements/constraints.txt; echo "$(TORCH) $(TORCH_PIP_ARGS)"; } | \
	$(PYTHON) -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])")
# Two installs share .venv: `notebooks` (course_lib and what running the notebooks needs: make demo, models, bench)
# and `dev` (that plus JupyterLab, the docs builder, the browser test and pytest: make test, docs, install).
NB_STAMP := $(VENV)/.installed-notebooks-$(INSTALL_HASH)
STAMP := $(VENV)/.installed-dev-$(INSTALL_HASH)

.PHONY: install demo test sync-check lint nbtest docs pytest browser-test bench models lock clean readme colab venv-install \
	test-lowest lock-lowest

$(NB_STAMP):
	@test -f $(STAMP) || $(MAKE) --no-print-directory EXTRAS=notebooks venv-install
	@touch $@

$(STAMP):
	@$(MAKE) --no-print-directory EXTRAS=dev venv-install
	@touch $@ $(NB_STAMP)

venv-install:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "course_lib needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1). Try: make PYTHON=python3.11"; exit 1; }
	@echo "Installing torch and the course's packages ($(EXTRAS)) into $(VENV) (minutes the first time; log: $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH)" && \
	   $(BIN)/python -m pip install -c requirements/constraints.txt -e ".[$(EXTRAS)]"; } > $(VENV)/install.log 2>&1 || \
	  { tail -n 25 $(VENV)/install.log; echo "Installing failed: the whole log is $(VENV)/install.log"; exit 1; }
	@find $(VENV) -maxdepth 1 -name '.installed*' ! -name '*-$(INSTALL_HASH)' -delete

install: $(STAMP)

# TRAIN=1 runs the cells flagged `#| slow` too: the chapters' own training runs and their measurements.
demo: $(NB_STAMP)
	COURSE_DATA_SOURCE=$${COURSE_DATA_SOURCE:-offline} $(if $(TRAIN),COURSE_RUN_FLAGS=slow) \
	  $(BIN)/python tools/run_notebooks.py --out $(OUT)

models: $(NB_STAMP)
	COURSE_DATA_SOURCE=$${COURSE_DATA_SOURCE:-offline} $(BIN)/python tools/make_models.py

test: sync-check lint nbtest docs pytest

# ruff, configured in pyproject.toml: the library, tests, tools, benches and the notebooks' code cells.
lint: $(STAMP)
	$(BIN)/ruff check course_lib tests tools bench nbs

# The notebooks are the source: exporting and cleaning them must change nothing that is committed.
sync-check: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/python tools/colab.py --check
	@if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$$(git status --porcelain -- nbs course_lib)" ]; then \
		git status --porcelain -- nbs course_lib; \
		echo "nbs/ and course_lib/ are out of sync or not clean: run nbdev-export and nbdev-clean, then commit."; \
		exit 1; fi

# The notebooks' test is make demo's run (cells flagged notest/slow/gpu skipped, as nbdev-test does) as a learner on
# Colab gets it (--alone): course_lib built as a wheel and installed apart, each notebook alone in an empty folder.
# One execution serves the tests, the figures and the docs site.
nbtest: $(STAMP)
	COURSE_DATA_SOURCE=$${COURSE_DATA_SOURCE:-offline} $(BIN)/python tools/run_notebooks.py --alone --out $(OUT)

# The docs site from the executed notebooks (make demo's, run first when there are none) -> _docs/html/index.html
docs: $(STAMP)
	@test -f $(OUT)/summary.md || $(MAKE) --no-print-directory demo
	$(BIN)/python tools/build_docs.py --notebooks $(OUT)/notebooks --out _docs

# The live panel in a real browser (headless Chromium, JupyterLab) and the docs site's figures; screenshots -> output/browser
browser-test: $(STAMP)
	$(BIN)/python -m pytest -m browser

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The course's measured figures, on offline data unless COURSE_DATA_SOURCE says otherwise (class_guidance trains the
# cpu preset once, ~10 min, and caches it; class_sampling then times that model).
bench: export COURSE_DATA_SOURCE := $(or $(COURSE_DATA_SOURCE),offline)
bench: $(NB_STAMP)
	$(BIN)/python bench/offline_dataset.py
	$(BIN)/python bench/offline_classifier.py
	$(BIN)/python bench/class_training.py
	$(BIN)/python bench/class_guidance.py
	$(BIN)/python bench/class_sampling.py
	$(BIN)/python bench/attention_cost.py
	$(BIN)/python bench/latent_diffusion.py
	$(BIN)/python bench/sampling_loop.py

# The lowest versions course_lib declares (requirements/lowest.txt), in a venv of their own: the library's tests, not the
# notebooks. torch stays at the lock's version (older CPU builds are a separate download).
LOWEST_VENV ?= .venv-lowest
LOWEST_HASH := $(shell { cat pyproject.toml requirements/lowest.txt; echo "$(TORCH) $(TORCH_PIP_ARGS)"; } | \
	$(PYTHON) -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])")
LOWEST_STAMP := $(LOWEST_VENV)/.installed-$(LOWEST_HASH)

$(LOWEST_STAMP):
	@echo "Installing the lowest declared versions (requirements/lowest.txt) into $(LOWEST_VENV) (log: $(LOWEST_VENV)/install.log)"
	@rm -rf $(LOWEST_VENV) && $(PYTHON) -m venv $(LOWEST_VENV)
	@{ $(LOWEST_VENV)/bin/python -m pip install --upgrade pip && \
	   $(LOWEST_VENV)/bin/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH)" && \
	   $(LOWEST_VENV)/bin/python -c "import torch; print(f'torch=={torch.__version__}')" > $(LOWEST_VENV)/torch.txt && \
	   $(LOWEST_VENV)/bin/python -m pip install -c requirements/lowest.txt -c $(LOWEST_VENV)/torch.txt -e ".[test]"; } \
	  > $(LOWEST_VENV)/install.log 2>&1 || \
	  { tail -n 25 $(LOWEST_VENV)/install.log; echo "Installing failed: the whole log is $(LOWEST_VENV)/install.log"; exit 1; }
	@touch $@

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pip list --format=freeze | grep -i -E "^($$($(PYTHON) tools/lowest.py | cut -d= -f1 | paste -sd'|'))=" | paste -sd' '
	$(LOWEST_VENV)/bin/python -m pytest -m "not browser" -p no:cacheprovider

# Re-pin requirements/lowest.txt after changing a lower bound in pyproject.toml (then run `make test-lowest`): every
# declared bound pinned exactly (tools/lowest.py), what they need at its newest, frozen from a venv of their own.
lock-lowest:
	rm -rf $(LOWEST_VENV)-lock && $(PYTHON) -m venv $(LOWEST_VENV)-lock
	$(LOWEST_VENV)-lock/bin/python -m pip install -q --upgrade pip
	$(LOWEST_VENV)-lock/bin/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PYTHON) tools/lowest.py > $(LOWEST_VENV)-lock/floors.txt  # and the torch just installed, which pip must not swap
	$(LOWEST_VENV)-lock/bin/python -c "import torch; print(f'torch=={torch.__version__}')" >> $(LOWEST_VENV)-lock/floors.txt
	$(LOWEST_VENV)-lock/bin/python -m pip install -q -c $(LOWEST_VENV)-lock/floors.txt -e ".[test]"
	{ echo "# The lowest versions course_lib declares (make test-lowest): every >= bound of pyproject.toml's dependencies and"; \
	  echo "# its test extra pinned exactly, the rest at its newest on the day it was made. Regenerate with make lock-lowest."; \
	  echo "$(TORCH)"; $(LOWEST_VENV)-lock/bin/python -m pip freeze --all --exclude-editable | \
	  grep -v -i -e "^torch==" -e "^course.lib" -e "^pip=="; } > requirements/lowest.txt
	rm -rf $(LOWEST_VENV)-lock

# Re-pin the lock file after changing pyproject's dependencies (then run `make test`).
lock: $(STAMP)
	{ sed -n '1,3p' requirements/constraints.txt; echo "$(TORCH)"; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -e "^torch==" -e "^course.lib" -e "^pip=="; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt

clean:
	rm -rf $(OUT) data/cache _proc _docs

# README.md is rendered from nbs/index.ipynb: by nbdev-readme where Quarto is installed, else by nbconvert.
readme: $(STAMP)
	$(BIN)/python tools/colab.py
	$(BIN)/nbdev-clean  # colab.py writes cells with their keys in another order than nbdev-clean: sync-check would fail
	if command -v quarto >/dev/null; then $(BIN)/nbdev-readme; else \
	  $(BIN)/jupyter nbconvert --to markdown --execute nbs/index.ipynb --output-dir . --output README \
	    --TagRemovePreprocessor.remove_input_tags=hide 2>&1 | tail -1; fi
