#!/bin/bash
# Extract the kernel's own review tools from Debian's kernel source tarball
# (apt package linux-source-6.1) into build/tools/linux-<series>/:
#
#   scripts/checkpatch.pl  scripts/spelling.txt  scripts/const_structs.checkpatch
#   scripts/kernel-doc     .clang-format
#
# `make check` runs them from there.  Installs the package if the tarball is
# missing (as root); extracts once, again only when the package changes.
#
#   KTOOLS_SERIES=6.1 (default): which linux-source-<series> to take them from.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
series=${KTOOLS_SERIES:-6.1}
pkg=linux-source-$series
tarball=/usr/src/$pkg.tar.xz
dest=$top/build/tools/linux-$series
members="scripts/checkpatch.pl scripts/spelling.txt scripts/const_structs.checkpatch
scripts/kernel-doc .clang-format"

if [ ! -f "$tarball" ]; then
	echo "get-kernel-tools: apt-get install $pkg" >&2
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >/dev/null
fi
version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo unknown)
if [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi

echo "get-kernel-tools: extracting the review tools of $pkg $version" >&2
rm -rf "$dest"
mkdir -p "$dest"
paths=
for m in $members; do
	paths="$paths $pkg/$m"
done
# shellcheck disable=SC2086 # one argument per member
tar -xJf "$tarball" -C "$dest" --strip-components=1 $paths
echo "$version" >"$dest/.version"
