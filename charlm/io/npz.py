"""The hardened `.npz` container: the only reader and writer of charlm's checkpoint files.

A checkpoint is a zip archive written by `np.savez` with one `<key>.npy` member per array, e.g.
`params/rnn.weight_ih_l0.npy`, plus `meta/config` (the config as UTF-8 JSON in a uint8 array) and
`meta/format_version` (an int64 scalar). This module knows nothing about models: the caller passes a
schema (charlm.io.checkpoint's) that maps (config, format_version) to the exact dtype and shape
of every other member; charlm.io.npz_members reads the members under it.

Threat model: a checkpoint may come from anywhere, so its bytes are hostile input. Loading
therefore never calls `np.load` and never unpickles; it parses data only (reliability.md section 3).
Nothing is allocated or decompressed beyond what the schema says the file must hold, every failure
is one `CheckpointError` whose message starts with the path, and there is no second, more
permissive try.
Saving must never leave a torn file under the final name, even if the process is SIGKILLed, so it
writes a temp file in the same directory, fsyncs it and renames it over the old one (section 4).
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CheckpointError, OutputError
from charlm.fs import NotRegularFileError, open_regular, write_atomic
from charlm.io.npz_members import (
    MAX_CONFIG_BYTES,
    META_CONFIG,
    META_FORMAT_VERSION,
    PARSE_ERRORS,
    SAVE_KINDS,
    Invalid,
    Schema,
    check_member_names,
    checked_members,
    expected_members,
    explain,
    human_size,
    json_to_array,
    read_member,
    read_meta,
)

DEFAULT_MAX_BYTES = 2**31
_ZIP_MAGIC = b"PK\x03\x04"
_MIN_ZIP_BYTES = 22              # the smallest possible zip: a bare end-of-central-directory record


class NonFiniteStateError(ValueError):
    """save_checkpoint refused a NaN or Inf value; the trainer treats this as divergence."""

    def __init__(self, key: str, count: int):
        super().__init__(f"refusing to save a checkpoint: {key} has {count} non-finite values")
        self.key, self.count = key, count


@dataclass
class Checkpoint:
    """A validated checkpoint: every array has the schema's dtype and shape and is finite."""

    path: Path
    config: dict
    format_version: int
    arrays: dict[str, np.ndarray]   # every member except meta/config and meta/format_version


# ---- saving ------------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], config: dict,
                    format_version: int) -> None:
    """Atomically write arrays plus meta/config and meta/format_version to path.

    Readers see the old file or the new one, never a mix, and a failed save leaves the old file as
    it was (except when only the final directory fsync fails: then the new file is in place but
    may not survive a power cut, and that is still reported as a failure).
    Raises NonFiniteStateError (a ValueError) if a float array holds NaN or Inf, ValueError for
    arrays or config that could not be loaded back, and OutputError if the OS refuses the write.
    """
    payload = _build_payload(arrays, config, format_version)
    try:
        write_atomic(path, payload)
    except OSError as exc:
        raise OutputError(_write_failure(os.fspath(path), exc, len(payload))) from exc


def _build_payload(arrays: dict[str, np.ndarray], config: dict, format_version: int) -> memoryview:
    """The whole archive in memory, so a bad array fails before a temp file exists."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, not {type(config).__name__}")
    if type(format_version) is not int:
        raise ValueError(f"format_version must be an int, not {format_version!r}")
    members = {key: _checked_array(key, value) for key, value in arrays.items()}
    members[META_CONFIG] = json_to_array(config)
    if members[META_CONFIG].size > MAX_CONFIG_BYTES:
        raise ValueError(f"config is {members[META_CONFIG].size} bytes as JSON; "
                         f"the loader accepts at most {MAX_CONFIG_BYTES}")
    members[META_FORMAT_VERSION] = np.array(format_version, dtype="<i8")
    buffer = io.BytesIO()
    # a file object, not a path: given a path, np.savez would append ".npz" to the name
    np.savez(buffer, allow_pickle=False, **members)
    return buffer.getbuffer()


def _checked_array(key: str, value: np.ndarray) -> np.ndarray:
    """value as a C-ordered array the loader will accept, or ValueError naming the key."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"checkpoint keys must be non-empty strings, not {key!r}")
    if key in (META_CONFIG, META_FORMAT_VERSION, "file", "allow_pickle"):
        raise ValueError(f"{key!r} is reserved; save_checkpoint writes it itself")
    arr = np.asarray(value)
    if not arr.flags.c_contiguous:
        # np.save would write fortran_order=True, which the loader refuses. (Not
        # np.ascontiguousarray: it turns a 0-d array into shape (1,).)
        arr = arr.copy(order="C")
    if arr.dtype.kind not in SAVE_KINDS or arr.dtype.str[0] not in "<|":
        raise ValueError(f"{key} has dtype {arr.dtype.str}; checkpoints hold only little-endian "
                         "bool, integer and float arrays")
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise NonFiniteStateError(key, bad)
    return arr


def _write_failure(path: str, exc: OSError, size: int) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason += f" (needed about {human_size(size)})"
    return f"could not write checkpoint {path}: {reason}"


# ---- loading -----------------------------------------------------------------------------------

def load_checkpoint(path: str | Path, schema: Schema, *,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> Checkpoint:
    """Read and fully validate the checkpoint at path, or raise one CheckpointError.

    schema(config, format_version) returns {key: (dtype, shape)} for every member except the two
    meta ones, or raises CheckpointError with a reason if it cannot use that config or version.
    """
    shown = os.fspath(path)
    try:
        config, version, arrays = _load(shown, schema, max_bytes)
    except Invalid as exc:
        raise CheckpointError(f"{shown}: {exc}") from None
    except CheckpointError as exc:      # from the schema, which does not know the path
        raise CheckpointError(f"{shown}: {exc}") from None
    except PARSE_ERRORS as exc:
        raise CheckpointError(f"{shown}: truncated or corrupt ({explain(exc)})") from exc
    return Checkpoint(Path(path), config, version, arrays)


def _load(path: str, schema: Schema, max_bytes: int) -> tuple[dict, int, dict[str, np.ndarray]]:
    with _open_regular_file(path, max_bytes) as f, zipfile.ZipFile(f) as zf:
        infos = checked_members(zf, os.fstat(f.fileno()).st_size, max_bytes)
        config, version = read_meta(zf, infos)
        expected = expected_members(schema, config, version, max_bytes)
        check_member_names(set(infos) - {META_CONFIG, META_FORMAT_VERSION}, set(expected))
        arrays = {}
        # in file order, so reading never seeks backwards
        for key in sorted(expected, key=lambda k: infos[k].header_offset):
            dtype, shape = expected[key]
            arrays[key] = read_member(zf, infos[key], key, dtype, shape)
    for key, arr in arrays.items():
        if arr.dtype.kind == "f":
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise Invalid(f"{key} has {bad} non-finite values")
    return config, version, arrays


_GIVE_A_CHECKPOINT = ("give a checkpoint that charlm train wrote, such as RUN_DIR/best.npz or "
                      "RUN_DIR/last.npz")


def _checkpoint_hint(path: str, mode: int) -> str:
    """What to give instead of a path that is not a regular file: a run directory's best.npz."""
    inside = os.path.join(path, "best.npz")
    if stat.S_ISDIR(mode) and os.path.isfile(inside):
        return f"to use the run's best checkpoint, give {inside}"
    return _GIVE_A_CHECKPOINT


def _open_regular_file(path: str, max_bytes: int):
    """The open file, checked to be a regular file of a sane size that starts like a zip."""
    try:
        f = open_regular(path)
    except FileNotFoundError as exc:
        raise Invalid(f"cannot read: {exc.strerror or exc}; {_GIVE_A_CHECKPOINT}") from None
    except NotRegularFileError as exc:
        raise Invalid(f"not a regular file ({exc.kind}); "
                       f"{_checkpoint_hint(path, exc.mode)}") from None
    except OSError as exc:
        raise Invalid(f"cannot read: {exc.strerror or exc}") from None
    try:
        _check_size_and_magic(f, os.fstat(f.fileno()).st_size, max_bytes)
    except BaseException:
        f.close()
        raise
    return f


def _check_size_and_magic(f, size: int, max_bytes: int) -> None:
    if size == 0:
        raise Invalid(f"file is empty (0 bytes); {_GIVE_A_CHECKPOINT}")
    if size > max_bytes:
        raise Invalid(f"file is {human_size(size)}, over the {human_size(max_bytes)} limit "
                       "for checkpoints")
    head = f.read(512)
    if not head.startswith(_ZIP_MAGIC):
        raise Invalid(_describe_non_zip(head))
    if size < _MIN_ZIP_BYTES:
        raise Invalid(f"truncated or corrupt (only {size} bytes)")
    f.seek(0)


def _describe_non_zip(head: bytes) -> str:
    if head.startswith(b"\x80"):
        return "pickle data, refusing to load it (a checkpoint is a .npz archive)"
    if head.startswith(b"\x93NUMPY"):
        return "expected a .npz archive, got .npy"
    if head.startswith(b"PK\x05\x06"):
        return "an empty zip archive, not a checkpoint"
    if _looks_like_text(head):
        return f"a text file, not a .npz archive; {_GIVE_A_CHECKPOINT}"
    return f"not a .npz archive (starts with bytes {head[:4].hex(' ')}); {_GIVE_A_CHECKPOINT}"


def _looks_like_text(head: bytes) -> bool:
    try:
        # incremental: a multi-byte character cut off by the 512-byte window is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


