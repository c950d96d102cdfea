#!/bin/bash
# Runs inside the VM (started by kbuild/vm-run): load the module, run the
# command saved in $1/cmd.sh with the project's environment ($FLAX_KO, and
# $FLAX_SAMPLE_KO for the sample module flax_iolat.ko), save its exit
# status and the kernel log in $1: kmsg.txt, every record of /dev/kmsg
# streamed from before insmod to the end (kbuild/flax_kmsg.py, which
# kbuild/vm-run judges), and dmesg.txt, the ring buffer at the end.
# Each step is reported on stderr ("vm: ..."), so that a run that hangs
# says where.  $FLAX_VM_CMD_TIMEOUT (seconds, from vm-run): past it, the
# blocked tasks go to the kernel log (SysRq w) and the command is stopped,
# its exit status saved as 124 and $1/timed-out created.
out=$1
top=$(cd "$(dirname "$0")/.." && pwd)
export FLAX_TOP=$top FLAX_OUT=$out FLAX_KO=${FLAX_KO:-$top/kbuild/flaxdev.ko} FLAX_IN_VM=1
# The sample user of the in-kernel API, built next to flaxdev.ko.
export FLAX_SAMPLE_KO=${FLAX_SAMPLE_KO:-$(dirname "$FLAX_KO")/flax_iolat.ko}
export PATH=$top/.venv/bin:$PATH
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export HOME=/tmp/flax-home XDG_CACHE_HOME=/tmp/flax-home/.cache
export JAX_PLATFORMS=cpu HYPOTHESIS_STORAGE_DIRECTORY=/tmp/flax-home/.hypothesis
mkdir -p "$HOME"
cd "$top" || exit 1
step() {
	echo "vm: [$(cut -d' ' -f1 /proc/uptime) s] $*" >&2
}
: >"$out/started" # vm-run: the guest is up
step "guest started"

# The kernel log, streamed for the whole run: the ring buffer alone keeps
# only its last log_buf_len bytes.  The reader stops at a record reading
# $kmsg_end, written below once the command is done.
rm -f "$out/kmsg.txt"
kmsg_end=flax-kmsg-end-$$-$RANDOM$RANDOM
rm -f /tmp/flax-kmsg-ready
python3 "$top/kbuild/flax_kmsg.py" read "$out/kmsg.txt" "$kmsg_end" \
	--ready /tmp/flax-kmsg-ready &
kmsg_pid=$!
for _ in $(seq 300); do
	[ -e /tmp/flax-kmsg-ready ] || ! kill -0 "$kmsg_pid" 2>/dev/null && break
	sleep 0.1
done
if [ -e /tmp/flax-kmsg-ready ]; then
	step "kernel log reader ready"
else
	step "kernel log reader not ready (going on; vm-run will judge its stream)"
fi

rc=0
if [ "${FLAX_NO_INSMOD:-0}" != 1 ]; then
	if ! insmod "$FLAX_KO"; then
		echo "vm: insmod $FLAX_KO failed" >&2
		rc=3
	elif [ ! -c /dev/flax/control ]; then
		echo "vm: /dev/flax/control did not appear after insmod" >&2
		rc=3
	else
		step "$(basename "$FLAX_KO") loaded"
	fi
fi
if [ $rc -eq 0 ]; then
	# In a session of its own, so that the watchdog can stop all of it.
	setsid bash "$out/cmd.sh" &
	cmd_pid=$!
	watchdog_pid=
	if [ "${FLAX_VM_CMD_TIMEOUT:-0}" -gt 0 ]; then
		(
			trap 'kill "$sleep_pid" 2>/dev/null; exit 0' TERM
			sleep "$FLAX_VM_CMD_TIMEOUT" &
			sleep_pid=$!
			wait "$sleep_pid"
			step "the command ran past $FLAX_VM_CMD_TIMEOUT s: logging blocked tasks, stopping it"
			touch "$out/timed-out"
			echo w >/proc/sysrq-trigger
			kill -TERM -- "-$cmd_pid" 2>/dev/null
			for _ in $(seq 20); do
				kill -0 -- "-$cmd_pid" 2>/dev/null || exit 0
				sleep 1
			done
			kill -KILL -- "-$cmd_pid" 2>/dev/null
		) &
		watchdog_pid=$!
	fi
	wait "$cmd_pid"
	rc=$?
	if [ -n "$watchdog_pid" ]; then
		kill "$watchdog_pid" 2>/dev/null
		wait "$watchdog_pid"
	fi
	[ ! -e "$out/timed-out" ] || rc=124
	step "command exited with status $rc"
fi
# The end marker, through a fresh open: /dev/kmsg rate-limits writers per
# open file.  The reader drains the records before it, then exits.
echo "<6>$kmsg_end" >/dev/kmsg
for _ in $(seq 300); do
	kill -0 "$kmsg_pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$kmsg_pid" 2>/dev/null; then
	echo "vm: the kernel log reader did not finish; stopping it" >&2
	kill "$kmsg_pid"
fi
wait "$kmsg_pid"
step "kernel log reader done"
dmesg >"$out/dmesg.txt"
echo "$rc" >"$out/rc"
exit "$rc"
