"""SIGKILL during save (reliability.md B1): the checkpoint on disk always loads.

A child process saves a 4 MiB checkpoint to the same path in a loop and is killed at random
moments. SIGKILL cannot be caught, so only the write order (temp file, fsync, rename) protects the
file. After every kill the path must load, hold one of the states the child actually wrote, and
remove_stale_temps must clear whatever the killed save left behind.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from charlm.checkpoint import load_checkpoint, remove_stale_temps, save_checkpoint

ROWS, COLS = 4096, 256          # float32: 4 MiB, so a save takes long enough to be interrupted
KILLS = 25
REPO = Path(__file__).resolve().parents[1]

CHILD = """
import sys
import numpy as np
from charlm.checkpoint import save_checkpoint

path, rows, cols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = np.random.default_rng(0).standard_normal((rows, cols)).astype("<f4")
print("ready", flush=True)
step = 0
while True:
    step += 1
    w[0, 0] = step                  # each save is distinguishable, the rest stays checkable
    save_checkpoint(path, {"params/w": w}, {"rows": rows, "cols": cols, "step": step}, 1)
"""


def crash_schema(config: dict, format_version: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {"params/w": ("<f4", (config["rows"], config["cols"]))}


def base_weights() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((ROWS, COLS)).astype("<f4")


def test_sigkill_during_save_never_leaves_a_torn_checkpoint(tmp_path):
    rng = random.Random(20240611)
    path = tmp_path / "last.npz"
    base = base_weights()
    save_checkpoint(path, {"params/w": base}, {"rows": ROWS, "cols": COLS, "step": 0}, 1)
    # single-threaded BLAS so 25 children start quickly and do not fight over cores
    env = os.environ | {"PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
                        "OMP_NUM_THREADS": "1"}
    steps, stale = [], 0
    for _ in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(ROWS), str(COLS)],
                                 stdout=subprocess.PIPE, env=env)
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0, 0.05))
        finally:
            child.kill()                        # SIGKILL: no handler, no finally, no cleanup
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL

        ckpt = load_checkpoint(path, crash_schema)
        w, step = ckpt.arrays["params/w"], ckpt.config["step"]
        assert w[0, 0] == (step if step else base[0, 0])   # the weights match the config's step
        assert np.array_equal(w.ravel()[1:], base.ravel()[1:])
        steps.append(step)
        stale += remove_stale_temps(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]
    # the children did save: otherwise the test never exercised a save being cut short
    assert max(steps) > 0
    print(f"{KILLS} kills: steps reached {steps}; {stale} stale temp files removed")
