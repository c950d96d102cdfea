# flaxdev: top-level entry points.  See README.md.
#
#   make demo       set up, build, boot the VM, serve digits, run the clients and a benchmark
#   make test       set up, build, run the host tests and the VM suite (one boot)
#   make bench      the standard benchmark suite in one VM boot, results in bench/
#   make profile    py-spy on the digits worker at 64 clients, summary in bench/
#   make check      static checks: W=1 and sparse builds for 6.1 and 6.12, vector
#                   registers only in FPU sections (objdump), checkpatch --strict,
#                   kernel-doc, clang-format, ruff, mypy --strict
#   make install    dkms-install (flaxdev.ko for every installed kernel) + udev-install
#
# KSERIES=6.1 (default) or 6.12 picks the Debian kernel series ("6.1 6.12":
# both, for make test); KVER=<release> pins one release.

KSERIES ?= 6.1
VENV := .venv
PY := $(VENV)/bin/python
TOP := $(CURDIR)

# Resolved when a recipe runs, after setup has installed the kernel.
kver = $(shell kbuild/kver.sh $(or $(KVER),$(KSERIES)))

.PHONY: all setup module python ctools test test-host fuzz test-exhaustive test-vm test-debug demo bench profile check \
	check-setup check-style check-build check-fpu check-python check-packaging \
	install dkms-install dkms-uninstall udev-install systemd-install clean

all: module python ctools

setup:
	@KSERIES="$(KSERIES)" bash kbuild/setup-host.sh

module:
	$(MAKE) -C kbuild KDIR=/usr/src/linux-headers-$(kver)

python: $(VENV)/.flaxdev-built

$(VENV)/.flaxdev-built: driver/uapi/flaxdev.h bindings/uapi_build.py bindings/flax_wloop.c bindings/flax_wloop.h setup.py
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-build-isolation -e .
	@touch $@

ctools:
	$(MAKE) -C examples
	$(MAKE) -C tests/vm/c

# With several series (KSERIES="6.1 6.12"), the module is rebuilt and the VM
# suite run once per series (the long tests, MiniLM and the stress run, and the
# serving layer's, repositories, metrics and a service across a module reload,
# on the first only).  On the first series, kbuild/kmsg-demo.sh (~40 s) first shows
# that vm-run's kernel-log check catches a WARNING planted early in a long
# run, one a check of the final dmesg misses: make test fails if it does not.
# Every boot has a time limit (vm-run --timeout; VM_TIMEOUT below), so that a
# hung guest fails the run in minutes, saying where it was, not at CI's limit.
test: setup
	$(MAKE) python ctools
	$(MAKE) test-host
	$(MAKE) fuzz
	set -e; long=1; for series in $(KSERIES); do \
		$(MAKE) module KSERIES=$$series; \
		if [ $$long = 1 ]; then bash kbuild/kmsg-demo.sh \
			--kver $$(kbuild/kver.sh $$series) --out out/vm-kmsg-demo --timeout 300; fi; \
		$(MAKE) test-vm KSERIES=$$series FLAX_VM_LONG=$$long FLAX_VM_SERVING=$$long; \
		long=0; \
	done

test-host:
	$(PY) -m pytest -q tests/host

# libFuzzer over the tokeniser and the vocabulary parser, FUZZ_SECONDS each
# (tests/fuzz/: seeds in the repository, new inputs and crashes in build/fuzz).
FUZZ_SECONDS ?= 30
fuzz:
	$(MAKE) -C tests/fuzz fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

# expf over all 2^32 inputs (C harness and numpy): several minutes.
test-exhaustive:
	FLAX_EXHAUSTIVE=1 $(PY) -m pytest -q tests/host/test_ops.py -k exhaustive

# FLAX_VM_LONG=0 leaves out the long tests: MiniLM end to end (about 4 minutes
# of a transformer under TCG), the patches CNN (about 2, most of it XLA
# compiling), the stress run (about 5) and the bench sweep (about 2): make
# test runs them on the first series only.
FLAX_VM_LONG ?= 1
# FLAX_VM_SERVING=0 leaves out the serving layer's tests (tests/vm/run.sh).
FLAX_VM_SERVING ?= 1
# The longest one suite's boot may take (vm-run --timeout): the long suite
# takes ~20 min here, the short one ~4.
VM_TIMEOUT ?= $(if $(filter 1,$(FLAX_VM_LONG)),2700,1200)
# The MiniLM test's reference vectors are computed natively first (seconds
# here, minutes under TCG), and the README's iris example trained natively
# (seconds here, ~1.5 min under TCG) for the VM to serve; without them the
# tests compute and train in the VM.
test-vm:
	if [ "$(FLAX_VM_LONG)" = 1 ]; then \
		$(PY) tests/vm/minilm_reference.py out/vm-test-$(kver)/minilm-reference.npz && \
		rm -rf out/vm-test-$(kver)/iris-repo && \
		$(PY) examples/iris_repo.py out/vm-test-$(kver)/iris-repo \
			> out/vm-test-$(kver)/iris-repo.txt; fi
	kbuild/vm-run --kver $(kver) --out out/vm-test-$(kver) --timeout $(VM_TIMEOUT) -- \
		env FLAX_VM_LONG=$(FLAX_VM_LONG) FLAX_VM_SERVING=$(FLAX_VM_SERVING) bash tests/vm/run.sh

# The VM suite on a kernel built with KASAN, lockdep, DEBUG_ATOMIC_SLEEP,
# kmemleak and UBSAN (kbuild/build-debug-kernel.sh, kbuild/debug.config).
# Not in CI: building that kernel takes longer than CI's budget on 2 cores.
# KASAN under TCG is slow: the boot may take up to 3 hours (vm-run --timeout).
test-debug: setup
	$(MAKE) python ctools
	set -e; src=$$(bash kbuild/build-debug-kernel.sh); mkdir -p build/debug; \
	$(MAKE) -C kbuild KDIR=$$src FLAX_OBJDIR=$(TOP)/build/kbuild-debug \
		FLAX_KO_OUT=$(TOP)/build/debug/flaxdev.ko; \
	cp build/kbuild-debug/flax_iolat.ko build/debug/; \
	kbuild/vm-run --kimage $$src/arch/x86/boot/bzImage --ko build/debug/flaxdev.ko \
		--out out/vm-test-debug --timeout 10800 -- bash tests/vm/run-debug.sh

demo: setup
	$(MAKE) all
	kbuild/vm-run --kver $(kver) --out out/vm-demo -- bash kbuild/demo.sh

# The standard benchmark suite in one VM boot (bench/run.sh); results, reports
# and plots land in bench/.  FLAX_BENCH_SECONDS=N sets the time per point.
bench: setup
	$(MAKE) all
	rm -rf out/vm-bench
	kbuild/vm-run --kver $(kver) --out out/vm-bench -- bash bench/run.sh
	mkdir -p bench
	for f in out/vm-bench/*.json; do cp "$${f%.json}.txt" "$${f%.json}.png" bench/; done
	$(VENV)/bin/python -c 'import json, sys; json.dump({n: json.load(open(f"out/vm-bench/{n}.json")) for n in sys.argv[1:]}, open("bench/results.json", "w"), indent=1)' \
		$$(cd out/vm-bench && ls *.json | sed 's/\.json$$//')

# Where the digits worker spends its time at 64 clients, or PROFILE_CLIENTS
# (bench/profile.sh: py-spy on the worker, wall clock); the summary lands in bench/.
PROFILE_CLIENTS ?= 64
profile: setup
	$(MAKE) all
	rm -rf out/vm-profile
	kbuild/vm-run --kver $(kver) --out out/vm-profile -- \
		env FLAX_PROFILE_CLIENTS=$(PROFILE_CLIENTS) bash bench/profile.sh
	cp out/vm-profile/profile-summary.txt bench/profile-$(PROFILE_CLIENTS)-clients.txt

# The static gates.  Each runs even if another failed (-k); all must pass.
# Both kernel series are checked whatever KSERIES says.
PY_SRC := pyflaxdev bindings tests scripts examples setup.py

check: check-setup
	$(MAKE) -k check-build check-fpu check-style check-python check-packaging

check-setup:
	@KSERIES="6.1 6.12" bash kbuild/setup-host.sh --check

check-build:
	bash kbuild/check-build.sh 6.1 6.12

# No vector registers outside kernel_fpu_begin/end (objdump of the objects).
check-fpu:
	bash kbuild/check-fpu.sh 6.1 6.12

check-style:
	bash kbuild/check-style.sh

check-python:
	$(VENV)/bin/ruff check $(PY_SRC)
	$(VENV)/bin/ruff format --check $(PY_SRC)
	$(VENV)/bin/mypy --strict

# The dkms package version is the module's.
MODULE_VERSION = $(shell sed -n 's/^MODULE_VERSION("\(.*\)");$$/\1/p' driver/flax_drv.c)
DKMS_VERSION = $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"$$/\1/p' kbuild/dkms.conf)
DKMS_SRC = /usr/src/flaxdev-$(MODULE_VERSION)

check-packaging:
	@test -n "$(MODULE_VERSION)" && test "$(MODULE_VERSION)" = "$(DKMS_VERSION)" || \
		{ echo "kbuild/dkms.conf PACKAGE_VERSION '$(DKMS_VERSION)' is not MODULE_VERSION '$(MODULE_VERSION)'" >&2; exit 1; }
	@echo "check-packaging: dkms.conf and MODULE_VERSION agree on $(MODULE_VERSION)"
	@if command -v systemd-analyze >/dev/null; then \
		t=$$(mktemp -d) && cp kbuild/systemd/flaxdev@.service $$t/flaxdev@check.service && \
		systemd-analyze verify $$t/flaxdev@check.service && rm -r $$t && \
		echo "check-packaging: systemd-analyze verify flaxdev@.service: clean"; \
	else echo "check-packaging: no systemd-analyze here: flaxdev@.service not verified"; fi

# Install (as root): the module through dkms, for every installed kernel
# that has its headers, and rebuilt by dkms for kernels installed later;
# the udev rule that gives /dev/flax/control to the group flax and keeps the
# model nodes' owners (README.md, Installing); the systemd template unit, the
# modules-load.d and modprobe.d files and /var/lib/flaxdev/models (systemd-install).
# DKMS_ACTION=build stops at dkms build (for a machine that cannot load modules).
install: dkms-install udev-install systemd-install

dkms-install: check-packaging
	@command -v dkms >/dev/null || { apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dkms >/dev/null; }
	if dkms status -m flaxdev -v $(MODULE_VERSION) | grep -q .; then \
		dkms remove -m flaxdev -v $(MODULE_VERSION) --all; fi
	rm -rf $(DKMS_SRC)
	mkdir -p $(DKMS_SRC)/kbuild
	cp -r driver $(DKMS_SRC)/
	cp kbuild/Makefile kbuild/Kbuild $(DKMS_SRC)/kbuild/
	cp kbuild/dkms.conf $(DKMS_SRC)/dkms.conf
	dkms add -m flaxdev -v $(MODULE_VERSION)
	set -e; for build in /lib/modules/*/build; do \
		[ -d "$$build/" ] || continue; \
		k=$${build#/lib/modules/}; k=$${k%/build}; \
		dkms $(or $(DKMS_ACTION),install) -m flaxdev -v $(MODULE_VERSION) -k "$$k"; \
	done

dkms-uninstall:
	-dkms remove -m flaxdev -v $(MODULE_VERSION) --all
	rm -rf $(DKMS_SRC)

udev-install:
	install -D -m 0644 kbuild/99-flaxdev.rules /etc/udev/rules.d/99-flaxdev.rules
	-udevadm control --reload-rules 2>/dev/null

# /etc/default/flaxdev is the admin's once it exists: never overwritten.
systemd-install:
	install -D -m 0644 kbuild/systemd/flaxdev@.service /etc/systemd/system/flaxdev@.service
	install -D -m 0644 kbuild/systemd/modules-load.conf /etc/modules-load.d/flaxdev.conf
	install -D -m 0644 kbuild/systemd/modprobe.conf /etc/modprobe.d/flaxdev.conf
	[ -e /etc/default/flaxdev ] || \
		install -D -m 0644 kbuild/systemd/default.conf /etc/default/flaxdev
	install -D -m 0644 README.md /usr/local/share/doc/flaxdev/README.md
	install -d -m 0755 /var/lib/flaxdev/models
	-systemctl daemon-reload 2>/dev/null

clean:
	-$(MAKE) -C kbuild clean KDIR=/usr/src/linux-headers-$(kver)
	-$(MAKE) -C examples clean
	-$(MAKE) -C tests/vm/c clean
	rm -rf out build pyflaxdev/_uapi*.so $(VENV)/.flaxdev-built
