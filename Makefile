# `make demo` and `make test` create .venv and install on first use; CI runs `make test` on a fresh clone.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# Pinned first: an unpinned torch may resolve a multi-GB CUDA build.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) train.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests

clean:
	rm -rf $(VENV) outputs
