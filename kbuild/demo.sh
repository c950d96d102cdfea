#!/bin/bash
# The demo, run inside the VM by `make demo` (kbuild/vm-run) with flaxdev.ko
# loaded: serve digits, classify the held-out digits with the C client and
# with pyflaxdev, show the status table and run a short benchmark against the
# Unix-socket servers and in-process jit(apply).
set -euo pipefail
cd "$FLAX_TOP"
out=$FLAX_OUT
log=$out/demo-worker.log

echo "== flaxdev serve digits --create (compiling batch sizes 1, 8, 64 under TCG takes a while)"
flaxdev serve digits --create --batch-sizes 1,8,64 >"$log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
for _ in $(seq 1 1800); do
	if [ "$(cat /sys/class/misc/flax/models/digits/workers 2>/dev/null || echo 0)" -ge 1 ]; then
		break
	fi
	if ! kill -0 $worker 2>/dev/null; then
		echo "demo: the worker died:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.5
done
cat "$log"

echo
echo "== examples/digits_client on the 360 held-out digits (top-3: class, probability)"
python - "$out/heldout.txt" "$out/labels.txt" <<'PY'
import sys
from pyflaxdev import models
x, y = models.get("digits").heldout()
with open(sys.argv[1], "w") as f:
    for img in x:
        f.write(" ".join(str(int(v)) for v in img.ravel()) + "\n")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(str(int(v)) for v in y) + "\n")
PY
examples/digits_client <"$out/heldout.txt" >"$out/c-results.txt"
head -n 3 "$out/c-results.txt"
paste "$out/c-results.txt" "$out/labels.txt" |
	awk -F'\t' '{ n++; if ($1 == $7) ok++ } END { printf "C client accuracy: %d/%d = %.4f\n", ok, n, ok / n }'

echo
echo "== pyflaxdev: accuracy through the device vs in-process apply"
python - <<'PY'
import numpy as np
import pyflaxdev
from pyflaxdev import models
spec = models.get("digits")
x, y = spec.heldout()
with pyflaxdev.open_model("digits") as model:  # /dev/flax/digits
    top1 = np.array([model.infer(img).top for img in x])
ref = spec.reference(x).argmax(axis=1)
print(f"pyflaxdev accuracy: {np.mean(top1 == y):.4f}; in-process apply: {np.mean(ref == y):.4f}; "
      f"agreement {np.mean(top1 == ref):.4f}")
PY

echo
echo "== the shell path: exec 3<>/dev/flax/digits; echo <64 numbers> >&3; cat <&3"
ls -l /dev/flax/
sh -c "exec 3<>/dev/flax/digits; head -n 1 '$out/heldout.txt' >&3; cat <&3"

echo
echo "== flaxdev list"
flaxdev list

echo
echo "== flaxdev infer digits --heldout 3"
flaxdev infer digits --heldout 3

echo
echo "== flaxdev status"
flaxdev status

echo
echo "== flaxdev bench digits --clients 1,64 --duration 5 (the device vs two Unix-socket servers vs in-process)"
flaxdev bench digits --clients 1,64 --duration 5 | tee "$out/bench.txt"
