#!/bin/bash
# make profile, inside the VM (kbuild/vm-run, flaxdev.ko loaded): where the
# digits worker spends its time at 64 clients (FLAX_PROFILE_CLIENTS: another
# count).  A worker serves digits; the bench loads it with those C clients
# (device only, no baseline) while py-spy
# samples the worker, idle time included (wall clock: time blocked in FETCH
# shows).  Writes $FLAX_OUT/profile.txt (py-spy raw stacks),
# profile-summary.txt (scripts/profile_summary.py) and profile-bench.*.
set -euo pipefail
cd "$FLAX_TOP"
out=$FLAX_OUT
secs=${FLAX_PROFILE_SECONDS:-20}
model=${FLAX_PROFILE_MODEL:-digits}
clients=${FLAX_PROFILE_CLIENTS:-64}

flaxdev serve "$model" --create >"$out/profile-worker.log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT
until grep -q 'worker ready' "$out/profile-worker.log"; do
	kill -0 $worker 2>/dev/null || { cat "$out/profile-worker.log"; exit 1; }
	sleep 1
done
flaxdev bench "$model" --transports device --clients "$clients" --no-baseline \
	--duration "$((secs + 10))" --save "$out/profile-bench" >/dev/null &
bench=$!
sleep 5	# past the clients' start and warm-up
py-spy record --pid $worker --duration "$secs" --idle --function --format raw \
	--output "$out/profile.txt" >/dev/null
wait $bench
{
	echo "# make profile: py-spy (--idle: wall clock) on the $model worker, C clients: $clients," \
		"$secs s; $(uname -r) under TCG, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
	python scripts/profile_summary.py "$out/profile.txt"
	echo
	echo "# bench (same run, py-spy sampling the worker):"
	cat "$out/profile-bench.txt"
} | tee "$out/profile-summary.txt"
