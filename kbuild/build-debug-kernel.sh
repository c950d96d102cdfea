#!/bin/bash
# Build the debug kernel of make test-debug: Debian's linux-source-6.1 with
# virtme-ng's minimal configuration plus kbuild/debug.config (KASAN, lockdep,
# DEBUG_ATOMIC_SLEEP, kmemleak, UBSAN).  The tree is build/debug-kernel/src;
# rerunning rebuilds only what changed.  Prints the tree's path.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$top/build/debug-kernel
src=$dest/src
tarball=/usr/src/linux-source-6.1.tar.xz

need=
for p in linux-source-6.1 flex bison bc libelf-dev libssl-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086 # a list of packages
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null
fi
if [ ! -f "$src/Makefile" ]; then
	rm -rf "$dest"
	mkdir -p "$dest"
	tar -xf "$tarball" -C "$dest"
	mv "$dest"/linux-source-6.1 "$src"
fi
cd "$src"
export PATH=$top/.venv/bin:$PATH
start=$(date +%s)
vng --build --skip-modules --config "$top/kbuild/debug.config" >&2
echo "build-debug-kernel: built in $(($(date +%s) - start)) s" >&2
# Out-of-tree modules need the module linker script and the kernel's symbol
# versions; the build skipped modules, so prepare them here, keeping the
# release (vng builds with LOCALVERSION=-virtme) so vermagic matches.
rel=$(cat include/config/kernel.release)
make -s modules_prepare LOCALVERSION="${rel#"$(make -s kernelversion)"}" >&2
cp vmlinux.symvers Module.symvers
[ "$(cat include/config/kernel.release)" = "$rel" ]
for opt in KASAN PROVE_LOCKING DEBUG_ATOMIC_SLEEP DEBUG_KMEMLEAK UBSAN MODULES MEMCG; do
	grep -q "^CONFIG_$opt=y" .config || {
		echo "build-debug-kernel: CONFIG_$opt is not set in the built kernel" >&2
		exit 1
	}
done
echo "$src"
