"""The run directory: one lock per run, its checkpoints and its metrics.jsonl, for every model
kind. Only one `charlm train` writes a directory at a time; a fresh run refuses one that holds
checkpoints unless told --force; nothing is written but through charlm.io and this module.
"""

import fcntl
import json
import os
from pathlib import Path

from charlm.errors import OutputError, UsageError
from charlm.fs import remove_stale_temps

CHECKPOINTS = ("last.npz", "best.npz")
METRICS = "metrics.jsonl"


def check_not_corpus(out, corpus_paths):
    """--out must not name one of the corpus files (a directory of the run is written there)."""
    if Path(out).resolve() in {Path(p).resolve() for p in corpus_paths}:
        raise UsageError(f"--out {out} is the corpus itself; choose a directory for the run")


class RunDir:
    """An open, locked run directory. Use as a context manager; closing releases the lock."""

    def __init__(self, out, *, fresh, force, resumable=True):
        """Create and lock out; a fresh run refuses one that holds checkpoints (and suggests
        --resume where the model kind can be resumed)."""
        self.path = Path(out)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / ".charlm.lock", "a+")
        except OSError as exc:
            raise OutputError(f"cannot use output directory {self.path}: {exc.strerror}; "
                              "choose another --out") from None
        try:
            self._take_lock()
            self._prepare(fresh, force, resumable)
        except BaseException:
            self._lock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._lock.close()

    def _take_lock(self):
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.seek(0)
            holder = self._lock.read(32).strip()
            by = f" (PID {holder})" if holder.isdigit() else ""
            raise OutputError(f"{self.path} is in use by another charlm train{by}; wait for it "
                              "or choose another --out") from None
        try:                                        # named in the error a second run gets
            os.ftruncate(self._lock.fileno(), 0)    # unbuffered: nothing left to fail at close()
            os.write(self._lock.fileno(), f"{os.getpid()}\n".encode())
        except OSError:
            pass                                    # only a nicety; the probe reports a bad dir

    def _prepare(self, fresh, force, resumable):
        out = self.path
        remove_stale_temps(out)
        existing = [name for name in CHECKPOINTS if (out / name).exists()]
        if fresh and existing and not force:
            resume = f"continue it with --resume {out / existing[0]}, " if resumable else ""
            raise UsageError(f"{out} already holds {', '.join(existing)}; {resume}overwrite "
                             "with --force, or choose another --out")
        probe = out / ".charlm-probe.tmp"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror}; "
                              "choose another --out") from None
        if fresh and force and (out / METRICS).exists():
            (out / METRICS).unlink()


def append_metrics(directory, record):
    """One JSON line per validation into directory's metrics.jsonl; a refused write is an
    OutputError (exit 5)."""
    path = Path(directory) / METRICS
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot append to {path}: {exc.strerror}") from None


def kept(directory):
    """The end of a divergence message: what the user still has in directory."""
    last = Path(directory) / "last.npz"
    if last.exists():
        return f"the last good checkpoint, {last}, is intact"
    return f"no checkpoint was saved in {directory}"


def validation_record(progress, tcfg, train_loss, val, lr):
    """One line of metrics.jsonl: where the run is and how it scores."""
    p = progress
    return {"step": p.step, "epoch": p.epoch,
            "chars_seen": p.step * tcfg.batch_size * tcfg.seq_len,
            "elapsed": round(p.elapsed, 3), "train_loss": train_loss, "val_loss": val,
            "lr": lr, "skipped": p.skipped}
