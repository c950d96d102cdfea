#!/bin/bash
# make bench, inside the VM (kbuild/vm-run, flaxdev.ko loaded): the standard
# suite in one boot.  Each suite writes $FLAX_OUT/<name>.{json,txt}; the
# Makefile copies them and the plots to bench/ and merges results.json.
#   null    the transport alone: 1 and 64 C clients, device vs both socket servers
#   digits  closed loop at 1..64 clients and open loop at three rates, device vs
#           socket vs batching socket, in-process jit(apply) baseline
#   patches 64x64 RGB photo patches through a CNN at 1 and 16 clients, device vs
#           both socket servers; the kernel's per-channel normalisation (sysfs
#           pre) beside numpy's
#   minilm  sentences/s at 1, 8 and 64 clients, device vs the in-process
#           pipeline (HF tokenizer + Flax + numpy pooling), at 32 tokens
set -euo pipefail
cd "$FLAX_TOP"
out=$FLAX_OUT
secs=${FLAX_BENCH_SECONDS:-8}

run() {
	local name=$1
	shift
	echo "=== flaxdev bench $*"
	flaxdev bench "$@" --save "$out/$name"
	cat /proc/loadavg
}

run null null --serve --clients 1,64 --duration "$secs" --plot "$out/null.png"
run digits digits --serve --clients 1,4,16,64 --rate 200,400,800 --duration "$secs" \
	--plot "$out/digits.png"
run patches patches --serve --clients 1,16 --duration "$secs" --plot "$out/patches.png"
if [ "${FLAX_BENCH_MINILM:-1}" = 1 ]; then
	# At 32 tokens, buckets 8 and 16: under TCG one encoder call at the
	# shipped 256 (bucket 32 and up) costs seconds to minutes.
	run minilm minilm --serve --transports device --clients 1,8,64 \
		--max-len 32 --buckets 8,16 --batch-sizes 1,8 --baseline-batches 1,8 \
		--duration "$((secs * 4))" --warmup 1 --plot "$out/minilm.png"
fi
