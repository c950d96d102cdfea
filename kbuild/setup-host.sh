#!/bin/bash
# Install what building, running and testing flaxdev needs on Debian 12
# (run as root).  Safe to run again: it installs only what is missing.
#
#   KSERIES=6.1 (default) or 6.12: which Debian kernel series to boot.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
series=${KSERIES:-6.1}

if [ "$series" = 6.1 ]; then
	kpkgs="linux-image-amd64 linux-headers-amd64"
else
	kpkgs="linux-image-$series*-amd64 linux-headers-$series*-amd64"
fi
pkgs="qemu-system-x86 busybox-static sparse gcc make libc6-dev"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if ! "$top/kbuild/kver.sh" "$series" >/dev/null 2>&1; then
	missing="$missing $kpkgs"
fi
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
