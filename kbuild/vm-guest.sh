#!/bin/bash
# Runs inside the VM (started by kbuild/vm-run): load the module, run the
# command saved in $1/cmd.sh with the project's environment ($FLAX_KO, and
# $FLAX_SAMPLE_KO for the sample module flax_iolat.ko), save its exit
# status and the kernel log in $1.
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

rc=0
if [ "${FLAX_NO_INSMOD:-0}" != 1 ]; then
	if ! insmod "$FLAX_KO"; then
		echo "vm: insmod $FLAX_KO failed" >&2
		rc=3
	elif [ ! -c /dev/flax ]; then
		echo "vm: /dev/flax did not appear after insmod" >&2
		rc=3
	fi
fi
if [ $rc -eq 0 ]; then
	bash "$out/cmd.sh"
	rc=$?
fi
echo "$rc" >"$out/rc"
dmesg >"$out/dmesg.txt"
exit "$rc"
