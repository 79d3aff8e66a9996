"""Mutation fuzz of the checkpoint loaders, for longer runs than the test suite's 200 examples.

    python tests/fuzz_checkpoint.py [ITERATIONS] [SEED]      (make fuzz runs 20000)

Each iteration mutates a valid input with the same edits as the Hypothesis tests and loads it:
a toy checkpoint (stored or deflated, test_checkpoint.py) or an exported safetensors file
(charlm.io.safetensors, test_export.py). The only acceptable outcomes are a file that passes
every check or a CheckpointError. Anything else is counted by exception type,
the input is kept for a regression test, and the exit status is 1. Not collected by pytest (its
name does not match test_*.py).
"""

import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from test_checkpoint import load_outcome, mutate, valid_checkpoint_bytes
from test_export import safetensors_outcome, valid_safetensors_bytes

# (seed bytes, the loader's outcome function, the file's suffix)
TARGETS = [(valid_checkpoint_bytes(deflated=False), load_outcome, ".npz"),
           (valid_checkpoint_bytes(deflated=True), load_outcome, ".npz"),
           (valid_safetensors_bytes(), safetensors_outcome, ".safetensors")]


def main(argv: list[str]) -> int:
    iterations = int(argv[1]) if len(argv) > 1 else 1000
    seed = int(argv[2]) if len(argv) > 2 else 0
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    crash_dir = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="charlm-fuzz-") as work:
        for i in range(iterations):
            seed_bytes, outcome, suffix = rng.choice(TARGETS)
            data = mutate(seed_bytes, rng.randint)
            path = Path(work) / f"fuzz{suffix}"
            path.write_bytes(data)
            try:
                counts[f"{suffix[1:]} {outcome(path)}"] += 1
            except Exception as exc:        # the bug being hunted: report it, keep going
                counts[f"FAIL {type(exc).__name__}"] += 1
                crash_dir = crash_dir or Path(tempfile.mkdtemp(prefix="charlm-fuzz-crashes-"))
                (crash_dir / f"crash-{seed}-{i}{suffix}").write_bytes(data)
                if counts[f"FAIL {type(exc).__name__}"] == 1:
                    traceback.print_exc()
    elapsed = time.monotonic() - started
    print(f"{iterations} mutated checkpoints in {elapsed:.1f} s (seed {seed})")
    for outcome, n in counts.most_common():
        print(f"  {outcome:<28} {n}")
    failures = sum(n for outcome, n in counts.items() if outcome.startswith("FAIL"))
    if failures:
        print(f"{failures} inputs escaped as other exceptions; kept in {crash_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
