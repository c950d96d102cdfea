"""Save the in-process MiniLM pipeline's vectors of ``test_minilm.SENTENCES``.

``make test-vm`` runs this on the host, natively, before booting the VM, so
that ``test_minilm`` compares the device's vectors with the reference without
spending minutes of emulated CPU on it; the test computes the reference itself
when the file is missing or was made from other sentences.

    python tests/vm/minilm_reference.py OUT.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from test_minilm import LEN, SENTENCES

from pyflaxdev.models import minilm


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT.npz", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    vectors = minilm.embed(SENTENCES, LEN)
    np.savez(out, sentences=np.array(SENTENCES), max_len=LEN, vectors=vectors)
    print(f"minilm reference: {len(SENTENCES)} vectors in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
