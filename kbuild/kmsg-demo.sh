#!/bin/bash
# Shows that kbuild/vm-run judges the kernel log of the whole run, not what
# is left in the ring buffer at the end (make test runs it on its first
# kernel series, ~30 s):
#
#   kbuild/kmsg-demo.sh [--kver REL] [--ko FILE] [--out DIR] [--timeout SECONDS]
#
# It boots with the kernel's own ring buffer (128 KiB on Debian), plants a
# WARNING line in the kernel log early (through /dev/kmsg), then logs about
# 600 KiB of harmless lines.  It passes if and only if vm-run fails, names
# the planted line as the run's one problem, lost no record on the way, and
# the final dmesg no longer holds the line (a check of it would have
# passed).  Inside the VM it runs itself with --guest.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
planted="WARNING: CPU: 0 PID: 1 at kbuild/kmsg-demo.sh: planted early in a long run"

if [ "${1:-}" = --guest ]; then
	# Writers of /dev/kmsg are rate-limited by default (10 lines per 5 s).
	echo on >/proc/sys/kernel/printk_devkmsg || exit 1
	echo "<4>$planted" >/dev/kmsg || exit 1
	# 3200 lines of 190 bytes, in bursts of 64: the reader keeps up,
	# while the 128 KiB ring wraps several times over.
	python3 - <<-'EOF' || exit 1
		import os, time
		fd = os.open("/dev/kmsg", os.O_WRONLY)
		for i in range(3200):
		    os.write(fd, b"<6>kmsg-demo: harmless line %5d " % i + b"." * 160 + b"\n")
		    if i % 64 == 63:
		        time.sleep(0.02)
		os.close(fd)
	EOF
	exit 0
fi

kver=$("$top/kbuild/kver.sh" 6.1)
ko=$top/kbuild/flaxdev.ko
out=$top/out/vm-kmsg-demo
timeout_s=300
while [ $# -gt 0 ]; do
	case $1 in
	--kver) kver=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	*) echo "kmsg-demo: unknown option $1" >&2; exit 2 ;;
	esac
done
mkdir -p "$out"
log=$out/vm-run.log

echo "kmsg-demo: vm-run must fail on a WARNING planted before ~600 KiB of kernel log"
"$top/kbuild/vm-run" --kver "$kver" --ko "$ko" --out "$out" --log-buf-len default \
	--timeout "$timeout_s" \
	-- bash kbuild/kmsg-demo.sh --guest 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

fail=0
verdict() { # CONDITION-STATUS MESSAGE
	if [ "$1" = 0 ]; then
		echo "kmsg-demo: ok: $2"
	else
		echo "kmsg-demo: FAILED: $2" >&2
		fail=1
	fi
}
[ "$rc" = 1 ]
verdict $? "vm-run failed (exit $rc, expected 1)"
grep -qF -- "command failed" "$log"
verdict $((!$?)) "the command itself succeeded"
grep -qF -- "$planted" "$out/kernel-problems.txt" 2>/dev/null &&
	[ "$(grep -c '' "$out/kernel-problems.txt")" = 1 ]
verdict $? "the planted line is the one problem vm-run names ($out/kernel-problems.txt)"
grep -qF -- "$planted" "$log"
verdict $? "vm-run's output shows the planted line"
grep -q 'kmsg-demo: harmless line  3199' "$out/kernel-log.txt" 2>/dev/null
verdict $? "the streamed log holds the whole flood"
[ -s "$out/dmesg.txt" ] && ! grep -qF -- "$planted" "$out/dmesg.txt"
verdict $? "the final dmesg ($(grep -c '' "$out/dmesg.txt" 2>/dev/null) lines) no longer holds the planted line"
if [ $fail = 0 ]; then
	echo "kmsg-demo: the kernel log check caught the early warning"
fi
exit $fail
