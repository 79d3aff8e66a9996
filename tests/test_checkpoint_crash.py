"""SIGKILL during save (reliability.md B1): the checkpoint on disk always loads.

A child process saves a 4 MiB checkpoint to the same path in a loop and is killed at random
moments. SIGKILL cannot be caught, so only the write order (temp file, fsync, rename) protects the
file. After every kill the path must load, hold one of the states the child actually wrote, and
remove_stale_temps must clear whatever the killed save left behind. A negative control runs the
same kills against a naive in-place writer, to show the test can see a torn file.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charlm.errors import CheckpointError
from charlm.fs import remove_stale_temps
from charlm.io.npz import load_checkpoint, save_checkpoint

ROWS, COLS = 4096, 256          # float32: 4 MiB, so a save takes long enough to be interrupted
KILLS = 25
REPO = Path(__file__).resolve().parents[1]

CHILD = """
import sys
import numpy as np
import pytest
from charlm.io.npz import json_to_array, save_checkpoint

def naive_save(path, arrays, config, format_version):
    with open(path, "wb") as f:     # truncates the good file first: what charlm must not do
        np.savez(f, allow_pickle=False, **arrays, **{
            "meta/config": json_to_array(config),
            "meta/format_version": np.array(format_version, dtype="<i8")})

path, rows, cols, writer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
save = naive_save if writer == "naive" else save_checkpoint
w = np.random.default_rng(0).standard_normal((rows, cols)).astype("<f4")
print("ready", flush=True)
step = 0
while True:
    step += 1
    w[0, 0] = step                  # each save is distinguishable, the rest stays checkable
    save(path, {"params/w": w}, {"rows": rows, "cols": cols, "step": step}, 1)
"""


def crash_schema(config: dict, format_version: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {"params/w": ("<f4", (config["rows"], config["cols"]))}


def start_and_kill(path: Path, writer: str, rng: random.Random) -> None:
    """Start a child saving to path in a loop, SIGKILL it 0-50 ms after it starts saving."""
    # single-threaded BLAS so the children start quickly and do not fight over cores
    env = os.environ | {"PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
                        "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(ROWS), str(COLS), writer],
                             stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 0.05))
    finally:
        child.kill()                        # SIGKILL: no handler, no finally, no cleanup
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def save_first(path: Path) -> np.ndarray:
    base = np.random.default_rng(0).standard_normal((ROWS, COLS)).astype("<f4")
    save_checkpoint(path, {"params/w": base}, {"rows": ROWS, "cols": COLS, "step": 0}, 1)
    return base


@pytest.mark.slow
def test_sigkill_during_save_never_leaves_a_torn_checkpoint(tmp_path):
    rng = random.Random(20240611)
    path = tmp_path / "last.npz"
    base = save_first(path)
    steps, stale = [], 0
    for _ in range(KILLS):
        start_and_kill(path, "atomic", rng)
        ckpt = load_checkpoint(path, crash_schema)
        w, step = ckpt.arrays["params/w"], ckpt.config["step"]
        assert w[0, 0] == (step if step else base[0, 0])   # the weights match the config's step
        assert np.array_equal(w.ravel()[1:], base.ravel()[1:])
        steps.append(step)
        stale += remove_stale_temps(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]
    # the children got through saves, and some kills landed inside one (a temp file was left):
    # otherwise the test never exercised a save being cut short
    assert max(steps) > 0 and stale > 0


def test_naive_in_place_writer_is_caught_tearing_the_file(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "last.npz"
    save_first(path)
    torn = 0
    for _ in range(10):
        start_and_kill(path, "naive", rng)
        try:
            load_checkpoint(path, crash_schema)
        except CheckpointError:
            torn += 1
            save_first(path)        # start the next round from a good file again
    assert torn > 0
