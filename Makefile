# Two commands on a fresh machine:  `make demo`  and  `make test`  (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build from the machine's local wheel; the package itself only asks for torch>=2.1.
TORCH_PIN := torch==2.13.0
# What napari's viewer needs under Xvfb (Debian/Ubuntu package names).
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup setup-test system-deps benchmarks device-data clean

demo: $(VENV)/.core-installed
	$(BIN)/zeroig demo -o demo-output

test: $(VENV)/.test-installed system-deps
	xvfb-run -a $(BIN)/python -m pytest

setup: $(VENV)/.core-installed
setup-test: $(VENV)/.test-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.core-installed
	$(BIN)/pip install -q -e ".[napari,testing]"
	touch $@

system-deps:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }

benchmarks: $(VENV)/.core-installed
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/quality.py

# The data benchmarks/device_check.sh reads on a lent GPU machine, to which ../shared does not travel.
device-data:
	mkdir -p .device-shared/data
	cp -r ../shared/data/microscopy-dev ../shared/data/lol15-dev .device-shared/data/

clean:
	rm -rf $(VENV) demo-output .pytest_cache .device-shared
