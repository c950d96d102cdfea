# flaxdev: top-level entry points.  See README.md.
#
#   make demo       set up, build, boot the VM, serve digits, run the clients and a benchmark
#   make test       set up, build, run the host tests and the VM suite (one boot)
#   make check      static checks (ruff, W=1, sparse)
#
# KSERIES=6.1 (default) or 6.12 picks the Debian kernel series; KVER=<release>
# pins one release.

KSERIES ?= 6.1
VENV := .venv
PY := $(VENV)/bin/python
TOP := $(CURDIR)

# Resolved when a recipe runs, after setup has installed the kernel.
kver = $(shell kbuild/kver.sh $(or $(KVER),$(KSERIES)))

.PHONY: all setup module python ctools test test-host test-exhaustive test-vm demo check clean

all: module python ctools

setup:
	@KSERIES=$(KSERIES) bash kbuild/setup-host.sh

module:
	$(MAKE) -C kbuild KDIR=/usr/src/linux-headers-$(kver)

python: $(VENV)/.flaxdev-built

$(VENV)/.flaxdev-built: driver/uapi/flaxdev.h bindings/uapi_build.py setup.py
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-build-isolation -e .
	@touch $@

ctools:
	$(MAKE) -C examples
	$(MAKE) -C tests/vm/c

test: setup
	$(MAKE) all
	$(MAKE) test-host
	$(MAKE) test-vm

test-host:
	$(PY) -m pytest -q tests/host

# expf over all 2^32 inputs (C harness and numpy): several minutes.
test-exhaustive:
	FLAX_EXHAUSTIVE=1 $(PY) -m pytest -q tests/host/test_ops.py -k exhaustive

test-vm:
	kbuild/vm-run --kver $(kver) --out out/vm-test -- bash tests/vm/run.sh

demo: setup
	$(MAKE) all
	kbuild/vm-run --kver $(kver) --out out/vm-demo -- bash kbuild/demo.sh

check:
	$(VENV)/bin/ruff check pyflaxdev bindings tests scripts setup.py
	$(MAKE) -C kbuild KDIR=/usr/src/linux-headers-$(kver) W=1
	$(MAKE) -C kbuild KDIR=/usr/src/linux-headers-$(kver) C=2

clean:
	-$(MAKE) -C kbuild clean KDIR=/usr/src/linux-headers-$(kver)
	-$(MAKE) -C examples clean
	-$(MAKE) -C tests/vm/c clean
	rm -rf out build pyflaxdev/_uapi*.so $(VENV)/.flaxdev-built
