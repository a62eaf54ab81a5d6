# `make demo` and `make test` create .venv and install on first use; CI runs `make test` on a fresh clone.
# The demo installs vit-fer alone; the tests add the dev extras (pytest, Gradio, selenium, ONNX), which the demo does
# not need. Each install has its own stamp, so `make demo` then `make test` installs only what is still missing.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.created
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast install install-test clean

install: $(DEMO_STAMP)

install-test: $(TEST_STAMP)

# pip --quiet keeps the log short; each step says first what it installs, since the larger ones take a minute.
$(VENV_STAMP):
	@echo "[1/3] Creating the virtual environment $(VENV) and upgrading pip"
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	@# Pinned first: an unpinned torch may resolve a multi-GB CUDA build.
	@echo "[2/3] Installing torch 2.13.0, CPU build (the largest download)"
	$(PYTHON) -m pip install --quiet torch==2.13.0
	touch $(VENV_STAMP)

$(DEMO_STAMP): pyproject.toml $(VENV_STAMP)
	@echo "[3/3] Installing vit-fer and its dependencies (transformers, datasets, accelerate, evaluate, matplotlib)"
	$(PYTHON) -m pip install --quiet -e .
	touch $(DEMO_STAMP)
	@echo "Installed vit-fer into $(VENV)."

$(TEST_STAMP): pyproject.toml $(VENV_STAMP)
	@echo "[3/3] Installing vit-fer with its test extras (pytest, pytest-xdist, selenium, gradio, onnx, onnxruntime, peft)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(TEST_STAMP) $(DEMO_STAMP)
	@echo "Installed vit-fer and its test extras into $(VENV)."

# OMP_WAIT_POLICY=PASSIVE: torch's two OpenMP threads sleep while they wait for each other instead of spinning. Beside
# another busy process a spinning thread holds the core its partner needs: 200 demo steps took 34 s spinning against
# 17 s passive with a CPU hog running, 13 s against 18 s on a quiet machine. Same threads, same arithmetic, same model.
demo: $(DEMO_STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PYTHON) train.py

# Four pytest workers (pytest-xdist), each test file on one worker so that its module fixtures are made once, the
# modules marked end_to_end first (tests/conftest.py); every test process runs torch on one thread. Four on 2 cores:
# many tests wait on subprocesses and servers; beside a CPU hog started from the same shell four workers got 1.6 cores
# of the 2 where three got 1.5 (284 s against 313 s). A hog in another session keeps a whole core whatever the number
# of workers (README, Timings).
test: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -n 4 --dist loadfile --no-loadscope-reorder tests

# The quick loop while you work: every test module not marked end_to_end (those run train.py, export, launch several
# processes or serve the demo), a fifth of the suite's time. CI runs them all (`make test`).
test-fast: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -n 4 --dist loadfile --no-loadscope-reorder -m "not end_to_end" tests

clean:
	rm -rf $(VENV) outputs
