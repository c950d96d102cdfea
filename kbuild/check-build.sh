#!/bin/bash
# The build gates of `make check`: for each kernel series given (default
# 6.1 and 6.12), build flaxdev.ko and the sample flax_iolat.ko with W=1
# (extra compiler warnings, and kernel-doc on the sources) and C=2 (sparse
# on every file, with __user, __bitwise endianness and lock-context
# checking), in build/check/<series>/ and build/check/<series>.ko, so
# kbuild/*.ko are left alone.  Any warning or error fails, the built
# module's modinfo must show description, author, license, version and a
# description for every parameter, and the sample must depend on flaxdev.
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
	out=$top/build/check/$series
	log=$out.log
	rm -f "$out.ko"
	rm -rf "$out"
	mkdir -p "$out"
	make -C kbuild KDIR="/usr/src/linux-headers-$kver" W=1 C=2 \
		FLAX_OBJDIR="$out" FLAX_KO_OUT="$out.ko" >"$log" 2>&1
	rc=$?
	# Compiler, sparse and modpost diagnostics.  (6.1's headers ship no
	# vmlinux, so kbuild skips the module's BTF there and says so: that is
	# not a warning.)
	problems=$(grep -E ': (warning|error|note):|WARNING|ERROR|Error ' "$log")
	nchecked=$(grep -c '^  CHECK ' "$log")
	if [ $rc != 0 ] || [ -n "$problems" ] || [ "$nchecked" = 0 ]; then
		echo "check-build $series ($kver): make exit $rc, $nchecked files through sparse:"
		sed 's/^/    /' "$log" | tail -n 60
		fail=1
		continue
	fi

	info=$(modinfo "$out.ko")
	for field in description author license version; do
		if ! grep -qE "^$field: +[^ ]" <<<"$info"; then
			echo "check-build $series: modinfo has no $field"
			fail=1
		fi
	done
	nparams=$(grep -c 'module_param' driver/*.c | awk -F: '{ n += $2 } END { print n }')
	nparm_desc=$(grep -cE '^parm: +[a-z_0-9]+:[^ ].* \([a-z]+\)$' <<<"$info")
	if [ "$nparm_desc" != "$nparams" ]; then
		echo "check-build $series: $nparams module parameters, $nparm_desc with a description in modinfo"
		fail=1
	fi
	# The sample user of the in-kernel API, built in the same invocation.
	sample=$out/flax_iolat.ko
	if [ -d samples ] && ! modinfo -F depends "$sample" 2>/dev/null | grep -qx flaxdev; then
		echo "check-build $series: $sample missing or not depending on flaxdev"
		fail=1
	fi
	echo "check-build $series ($kver): W=1 C=2 clean, $nchecked files through sparse;" \
		"modinfo: $nparm_desc parameters described, version $(modinfo -F version "$out.ko")"
done
exit $fail
