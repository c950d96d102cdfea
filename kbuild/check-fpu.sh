#!/bin/bash
# The FPU gate of `make check`: for each kernel series given (default 6.1
# and 6.12), check with kbuild/check-fpu.py that no code of flaxdev.ko
# touches vector registers (SSE, AVX) outside kernel_fpu_begin/end: every
# such function must be in flax_ops.o and be reached only from inside an
# FPU section (see the script for the exact rule).  It reads the objects
# check-build made in build/check/<series>/ when they are newer than every
# source, else builds its own in build/check-fpu/<series>/.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
fail=0
[ $# -gt 0 ] || set -- 6.1 6.12
for series in "$@"; do
	if ! kver=$("$top/kbuild/kver.sh" "$series"); then
		fail=1
		continue
	fi
	objdir=$top/build/check/$series
	newer=$(find driver kbuild/Kbuild -newer "$objdir/flaxdev.mod" 2>/dev/null | head -n 1)
	if [ ! -f "$objdir/flaxdev.mod" ] || [ -n "$newer" ]; then
		objdir=$top/build/check-fpu/$series
		rm -rf "$objdir"
		mkdir -p "$objdir"
		if ! make -C kbuild KDIR="/usr/src/linux-headers-$kver" \
			FLAX_OBJDIR="$objdir" FLAX_KO_OUT="$objdir.ko" \
			>"$objdir.log" 2>&1; then
			echo "check-fpu $series ($kver): build failed, see $objdir.log"
			fail=1
			continue
		fi
	fi
	python3 "$top/kbuild/check-fpu.py" "$objdir" flax_ops.o || fail=1
done
exit $fail
