"""Mutation fuzz of the checkpoint loader, for longer runs than the test suite's 200 examples.

    python tests/fuzz_checkpoint.py [ITERATIONS] [SEED]      (make fuzz runs 20000)

Each iteration mutates a valid toy checkpoint (stored or deflated) with the same edits as
test_checkpoint.py's Hypothesis test and loads it. The only acceptable outcomes are a checkpoint
that passes every schema check or a CheckpointError. Anything else is counted by exception type,
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


def main(argv: list[str]) -> int:
    iterations = int(argv[1]) if len(argv) > 1 else 1000
    seed = int(argv[2]) if len(argv) > 2 else 0
    rng = random.Random(seed)
    seeds = [valid_checkpoint_bytes(deflated=False), valid_checkpoint_bytes(deflated=True)]
    counts: Counter[str] = Counter()
    crash_dir = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="charlm-fuzz-") as work:
        path = Path(work) / "fuzz.npz"
        for i in range(iterations):
            data = mutate(rng.choice(seeds), rng.randint)
            path.write_bytes(data)
            try:
                counts[load_outcome(path)] += 1
            except Exception as exc:        # the bug being hunted: report it, keep going
                counts[f"FAIL {type(exc).__name__}"] += 1
                crash_dir = crash_dir or Path(tempfile.mkdtemp(prefix="charlm-fuzz-crashes-"))
                (crash_dir / f"crash-{seed}-{i}.npz").write_bytes(data)
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
