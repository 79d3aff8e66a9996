"""metrics.jsonl read back (for `charlm plot`), as strictly as the checkpoints are.

A run directory's metrics.jsonl (charlm.train.rundir writes it) holds one JSON object a line:
`{"event": "start", ...}` when a run starts or resumes, `{"event": "rollback", ...}` when it
diverged and went back, `{"event": "mixture", ...}` when it has scored its n-gram and their
mixture (charlm.train.mixture), and a validation record (no "event") with `step`, `elapsed`,
`train_loss` and `val_loss`. A line that is not one of these (not JSON, a field missing or of
the wrong type, a negative step, an unknown event) is left out with a warning naming it; a
file that holds no validation record at all, is not a regular file or is too large is an
error.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from charlm.errors import CorpusError
from charlm.fs import NotRegularFileError, open_regular
from charlm.train.rundir import METRICS

MAX_BYTES = 256 << 20          # a validation a line: far more than any run writes
EVENTS = ("start", "rollback", "mixture")


@dataclass
class Point:
    step: int
    elapsed: float             # seconds since the run began (probes and resumed parts included)
    train_loss: float | None   # nats/char, the mean since the previous validation
    val_loss: float | None


@dataclass
class RunMetrics:
    name: str                                  # the run directory's name, for a legend
    points: list[Point] = field(default_factory=list)
    rollbacks: list[Point] = field(default_factory=list)   # where a run went back (no losses)
    warnings: list[str] = field(default_factory=list)


def read_run(path):
    """RunMetrics of a run directory (or of a metrics.jsonl file given itself)."""
    path = Path(path)
    file = path / METRICS if path.is_dir() else path
    name = (path if path.is_dir() else path.parent).resolve().name or str(path)
    try:
        with open_regular(file) as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        hint = (f"{path} has no {METRICS}; give a directory that charlm train wrote"
                if path.is_dir() else f"{path} does not exist")
        raise CorpusError(hint) from None
    except (NotRegularFileError, OSError) as exc:
        raise CorpusError(f"cannot read {file}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise CorpusError(f"{file} is larger than {MAX_BYTES >> 20} MiB; not a charlm metrics "
                          "file")
    run = RunMetrics(name)
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            _add_line(run, line, f"{file}:{number}")
    if not run.points:
        raise CorpusError(f"{file} holds no validation record; train with validation "
                          "(--val-frac above 0) and let it validate at least once")
    return run


def _add_line(run, line, where):
    """One line into run, or a warning saying why it was left out."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        run.warnings.append(f"{where}: not a JSON line; left out")
        return
    if not isinstance(record, dict):
        run.warnings.append(f"{where}: not a JSON object; left out")
        return
    event = record.get("event")
    if event is not None and event not in EVENTS:
        run.warnings.append(f"{where}: unknown event {str(event)[:40]!r}; left out")
        return
    if event in ("start", "mixture"):               # nothing to draw
        return
    try:
        step, elapsed = _count(record, "step"), _number(record, "elapsed")
        losses = (None, None) if event else (_loss(record, "train_loss"),
                                              _loss(record, "val_loss"))
    except ValueError as exc:
        run.warnings.append(f"{where}: {exc}; left out")
        return
    (run.rollbacks if event else run.points).append(Point(step, elapsed, *losses))


def _count(record, key):
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key!r} is not a count")
    return value


def _number(record, key):
    value = record.get(key)
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"{key!r} is not a number of seconds")
    return float(value)


def _loss(record, key):
    """A loss in nats, or None where there is none (no validation split, no finite step)."""
    if key not in record:
        raise ValueError(f"{key!r} is missing")
    value = record[key]
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{key!r} is not a number")
    return float(value) if math.isfinite(value) and 0 <= value < 1e6 else None
