#!/bin/bash
# make test-debug, inside the VM on the debug kernel: the whole VM suite, then
# a kmemleak scan.  KASAN, UBSAN, lockdep and atomic-sleep reports land in the
# kernel log, which kbuild/vm-run streams for the whole run and checks (a
# report early in the suite counts however much is logged after it).
set -u
km=/sys/kernel/debug/kmemleak
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
if [ ! -w "$km" ]; then
	echo "run-debug: $km is missing: not a kmemleak kernel" >&2
	exit 1
fi
echo clear >"$km" # leaks from before the suite are not ours to judge

# KASAN's quarantine holds freed objects, so slab counts mean nothing here:
# the lifecycle test leaves leak detection to kmemleak below.
# The MiniLM transformer and the stress run would take most of an hour
# each under KASAN and TCG; everything else runs.
FLAX_KMEMLEAK=1 FLAX_VM_LONG=0 bash "$FLAX_TOP/tests/vm/run.sh"
status=$?

# kmemleak reports an object only after two scans find it unreferenced.
echo scan >"$km"
sleep 6
echo scan >"$km"
cat "$km" >"$FLAX_OUT/kmemleak.txt"
total=$(grep -c '^unreferenced object' "$FLAX_OUT/kmemleak.txt")
ours=$(awk '/^unreferenced object/ { n++ } /flax/ { hit[n] = 1 } END { print length(hit) }' \
	"$FLAX_OUT/kmemleak.txt")
echo "=== kmemleak: $total unreferenced objects, $ours with flaxdev in their backtrace"
if [ "$total" -ne 0 ]; then
	echo "kmemleak report in $FLAX_OUT/kmemleak.txt"
	status=1
fi
exit $status
