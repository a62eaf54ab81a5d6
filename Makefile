# `make demo` and `make test` create .venv and install on first use; CI runs `make test` on a fresh clone.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

# pip --quiet keeps the log short; each step says first what it installs, since the larger ones take a minute.
$(STAMP): pyproject.toml
	@echo "[1/4] Creating the virtual environment $(VENV)"
	python3 -m venv $(VENV)
	@echo "[2/4] Upgrading pip"
	$(PYTHON) -m pip install --quiet --upgrade pip
	@# Pinned first: an unpinned torch may resolve a multi-GB CUDA build.
	@echo "[3/4] Installing torch 2.13.0 (the largest download)"
	$(PYTHON) -m pip install --quiet torch==2.13.0
	@echo "[4/4] Installing vit-fer and its dependencies (transformers, datasets, evaluate, ...)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)
	@echo "Installed into $(VENV)."

demo: $(STAMP)
	$(PYTHON) train.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests

clean:
	rm -rf $(VENV) outputs
