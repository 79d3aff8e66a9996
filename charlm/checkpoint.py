"""The only reader and writer of charlm's `.npz` checkpoints.

A checkpoint is a zip archive written by `np.savez` with one `<key>.npy` member per array, e.g.
`params/rnn.weight_ih_l0.npy`, plus `meta/config` (the config as UTF-8 JSON in a uint8 array) and
`meta/format_version` (an int64 scalar). This module knows nothing about models: the caller passes a
schema that maps (config, format_version) to the exact dtype and shape of every other member.

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
import json
import os
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charlm.errors import CheckpointError, OutputError

Schema = Callable[[dict, int], dict[str, tuple[str, tuple[int, ...]]]]

META_CONFIG = "meta/config"
META_FORMAT_VERSION = "meta/format_version"
DEFAULT_MAX_BYTES = 2**31
MAX_MEMBERS = 256
MAX_HEADER_BYTES = 1024          # charlm's own headers are under 128 bytes
MAX_CONFIG_BYTES = 64 * 1024
MAX_RATIO = 1000                 # deflate tops out near 1032:1, so only crafted data gets past this
RATIO_MIN_BYTES = 1024 * 1024    # small members cannot hurt however well they compress
TEMP_PREFIX, TEMP_SUFFIX = ".charlm-", ".tmp"

_ZIP_MAGIC = b"PK\x03\x04"
_MIN_ZIP_BYTES = 22              # the smallest possible zip: a bare end-of-central-directory record
_SAVE_KINDS = "biuf"             # bool, int, uint, float: plain data with no pickle or string form
_CHUNK = 1 << 20
_MAX_LISTED = 10

# What hostile bytes can make zipfile, zlib, json and np.lib.format raise. Anything else
# (AttributeError, NameError, AssertionError) is a bug in charlm, not dressed up as a bad file.
_PARSE_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
    RuntimeError, OSError, ValueError, LookupError, TypeError, ArithmeticError, struct.error,
    MemoryError, Warning,
)


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


class _Invalid(Exception):
    """A reason the file is not a usable checkpoint; load_checkpoint adds the path."""


# ---- JSON in arrays ----------------------------------------------------------------------------

def json_to_array(obj: Any) -> np.ndarray:
    """obj as strict, key-sorted JSON in a 1-D uint8 array of UTF-8 bytes, as meta/config is."""
    # allow_nan=False: NaN is not JSON, and array_to_json would refuse it on the way back
    text = json.dumps(obj, sort_keys=True, allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def array_to_json(arr: np.ndarray, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse what json_to_array stored. Raises ValueError on anything but strict UTF-8 JSON."""
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"JSON must be stored as 1-D uint8, not {arr.dtype.str} {arr.shape}")
    if arr.size > max_bytes:
        raise ValueError(f"JSON is {arr.size} bytes, over the {max_bytes}-byte limit")
    return json.loads(arr.tobytes().decode("utf-8"), parse_constant=_reject_constant,
                      object_pairs_hook=_unique_keys)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    # json.loads would silently keep the last of two equal keys; a writer never produces that
    keys = Counter(key for key, _ in pairs)
    repeated = [key for key, n in keys.items() if n > 1]
    if repeated:
        raise ValueError(f"duplicate JSON key {_show(repeated[0])}")
    return dict(pairs)


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
        _publish(os.fspath(path), payload)
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
    if arr.dtype.kind not in _SAVE_KINDS or arr.dtype.str[0] not in "<|":
        raise ValueError(f"{key} has dtype {arr.dtype.str}; checkpoints hold only little-endian "
                         "bool, integer and float arrays")
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise NonFiniteStateError(key, bad)
    return arr


def _publish(path: str, payload: memoryview) -> None:
    """Write payload to a temp file beside path, make it durable, then rename it over path."""
    directory = os.path.dirname(path) or "."
    # same directory: os.replace is atomic only within one filesystem (EXDEV otherwise)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    published = False
    try:
        _set_default_mode(fd)
        _write_bytes(fd, payload)
        # a failed fsync is a failed save: the kernel may have dropped the dirty pages already,
        # so a retry could "succeed" with the data lost (fsyncgate, ATC'20)
        os.fsync(fd)
        closing, fd = fd, -1    # close() frees the descriptor even when it reports an error
        os.close(closing)
        os.replace(tmp, path)
        published = True
        _fsync_directory(directory)
    except BaseException:
        # also on KeyboardInterrupt: an abandoned save must not leave its temp file behind
        if fd >= 0:
            _close_quietly(fd)
        if not published:
            _unlink_quietly(tmp)
        raise


def _write_bytes(fd: int, data: memoryview) -> None:
    """Write all of data to fd. Module level so tests can make it fail like a full disk."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _set_default_mode(fd: int) -> None:
    # mkstemp creates 0600; give the checkpoint the mode a plainly created file would get
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)
    except OSError:
        pass    # e.g. a filesystem without Unix modes: the save itself is still good


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; without this a power cut can bring the old name back."""
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        # some filesystems cannot fsync a directory at all; the file is already complete
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(dir_fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass    # remove_stale_temps will find it at the next start


def _write_failure(path: str, exc: OSError, size: int) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason += f" (needed about {_human_size(size)})"
    return f"could not write checkpoint {path}: {reason}"


def remove_stale_temps(directory: str | Path) -> int:
    """Delete `.charlm-*.tmp` files that a killed save left in directory; returns how many.

    Call it only while holding the directory's lock: a live save's temp file looks the same.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
            if entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


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
    except _Invalid as exc:
        raise CheckpointError(f"{shown}: {exc}") from None
    except CheckpointError as exc:      # from the schema, which does not know the path
        raise CheckpointError(f"{shown}: {exc}") from None
    except _PARSE_ERRORS as exc:
        raise CheckpointError(f"{shown}: truncated or corrupt ({_explain(exc)})") from exc
    return Checkpoint(Path(path), config, version, arrays)


def _load(path: str, schema: Schema, max_bytes: int) -> tuple[dict, int, dict[str, np.ndarray]]:
    with _open_regular_file(path, max_bytes) as f, zipfile.ZipFile(f) as zf:
        infos = _checked_members(zf, os.fstat(f.fileno()).st_size, max_bytes)
        config, version = _read_meta(zf, infos)
        expected = _expected_members(schema, config, version, max_bytes)
        _check_member_names(set(infos) - {META_CONFIG, META_FORMAT_VERSION}, set(expected))
        arrays = {}
        # in file order, so reading never seeks backwards
        for key in sorted(expected, key=lambda k: infos[k].header_offset):
            dtype, shape = expected[key]
            arrays[key] = _read_member(zf, infos[key], key, dtype, shape)
    for key, arr in arrays.items():
        if arr.dtype.kind == "f":
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise _Invalid(f"{key} has {bad} non-finite values")
    return config, version, arrays


def _open_regular_file(path: str, max_bytes: int):
    """The open file, checked to be a regular file of a sane size that starts like a zip."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise _Invalid(f"cannot read: {exc.strerror or exc}; {_GIVE_A_CHECKPOINT}") from None
    except OSError as exc:
        raise _Invalid(f"cannot read: {exc.strerror or exc}") from None
    try:
        # fstat the descriptor, not the name: the file cannot be swapped between check and use
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Invalid(f"not a regular file ({_file_kind(info.st_mode)}); "
                           f"{_checkpoint_hint(path, info.st_mode)}")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        _check_size_and_magic(f, info.st_size, max_bytes)
    except BaseException:
        f.close()
        raise
    return f


_GIVE_A_CHECKPOINT = ("give a checkpoint that charlm train wrote, such as RUN_DIR/best.npz or "
                      "RUN_DIR/last.npz")


def _checkpoint_hint(path: str, mode: int) -> str:
    """What to give instead of a path that is not a regular file: a run directory's best.npz."""
    inside = os.path.join(path, "best.npz")
    if stat.S_ISDIR(mode) and os.path.isfile(inside):
        return f"to use the run's best checkpoint, give {inside}"
    return _GIVE_A_CHECKPOINT


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def _check_size_and_magic(f, size: int, max_bytes: int) -> None:
    if size == 0:
        raise _Invalid(f"file is empty (0 bytes); {_GIVE_A_CHECKPOINT}")
    if size > max_bytes:
        raise _Invalid(f"file is {_human_size(size)}, over the {_human_size(max_bytes)} limit "
                       "for checkpoints")
    head = f.read(512)
    if not head.startswith(_ZIP_MAGIC):
        raise _Invalid(_describe_non_zip(head))
    if size < _MIN_ZIP_BYTES:
        raise _Invalid(f"truncated or corrupt (only {size} bytes)")
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


def _checked_members(zf: zipfile.ZipFile, file_size: int,
                     max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """{key: ZipInfo} once the archive's directory is known to be safe to read from."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Invalid(f"{len(infos)} members; a checkpoint has at most {MAX_MEMBERS}")
    counts = Counter(info.filename for info in infos)
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise _Invalid(f"duplicate member {_show(repeated[0])}")
    # members cannot hold more bytes than the file has; this also refuses overlapping members
    stored = sum(info.compress_size for info in infos)
    if stored > file_size:
        raise _Invalid(f"truncated or corrupt (members claim {stored} bytes of a "
                       f"{file_size}-byte file)")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise _Invalid(f"members declare {_human_size(total)} uncompressed, over the "
                       f"{_human_size(max_bytes)} limit")
    for info in infos:
        _check_member_entry(info)
    return {info.filename[:-len(".npy")]: info for info in infos}


def _check_member_entry(info: zipfile.ZipInfo) -> None:
    name = _show(info.filename)
    if info.is_dir():
        raise _Invalid(f"directory entry {name} in the archive")
    if not info.filename.endswith(".npy"):
        raise _Invalid(f"member {name} is not a .npy array")
    if info.flag_bits & 0x1:
        raise _Invalid(f"member {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Invalid(f"member {name} uses compression method {info.compress_type}; "
                       "only stored and deflated are supported")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _Invalid(f"truncated or corrupt (sizes of stored member {name} disagree)")
    # the Keras guard: a large member that compresses this well is a bomb, not weights
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * info.compress_size:
        raise _Invalid(f"member {name} expands {_human_size(info.compress_size)} to "
                       f"{_human_size(info.file_size)}; refusing a likely zip bomb")


def _read_meta(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]) -> tuple[dict, int]:
    """meta/config and meta/format_version, read under their own small caps before anything else."""
    for key in (META_FORMAT_VERSION, META_CONFIG):
        if key not in infos:
            raise _Invalid(f"not a charlm checkpoint (no {key} member)")
    raw_version = _read_member(zf, infos[META_FORMAT_VERSION], META_FORMAT_VERSION, "<i8", ())
    raw_config = _read_member(zf, infos[META_CONFIG], META_CONFIG, "|u1", None)
    try:
        config = array_to_json(raw_config)
    except (ValueError, RecursionError) as exc:     # UnicodeDecodeError and JSON errors included
        raise _Invalid(f"{META_CONFIG} is not valid JSON ({_one_line(str(exc))})") from None
    if not isinstance(config, dict):
        raise _Invalid(f"{META_CONFIG} must be a JSON object, not {type(config).__name__}")
    return config, int(raw_version)


def _expected_members(schema: Schema, config: dict, version: int,
                      max_bytes: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """The schema's answer, checked: its shapes come from the file's config, so are untrusted."""
    try:
        answer = schema(config, version)
    except CheckpointError:
        raise
    except Exception as exc:
        # a config the schema could not even index (a missing key, a string where an int goes)
        raise _Invalid(f"unusable config ({type(exc).__name__}: {_one_line(str(exc))})") from exc
    expected, total = {}, 0
    for key, (dtype_str, shape) in answer.items():
        assert key not in (META_CONFIG, META_FORMAT_VERSION), f"schema must not list {key}"
        dtype = np.dtype(dtype_str)
        assert dtype.kind in _SAVE_KINDS and dtype.str[0] in "<|", f"schema dtype {dtype_str}"
        shape = _checked_shape(key, shape)
        total += _nbytes(dtype, shape)
        expected[key] = (dtype, shape)
    if total > max_bytes:
        raise _Invalid(f"config implies {_human_size(total)} of arrays, over the "
                       f"{_human_size(max_bytes)} limit")
    return expected


def _checked_shape(key: str, shape: Any) -> tuple[int, ...]:
    ok = isinstance(shape, tuple) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0
        for d in shape)
    if not ok:
        raise _Invalid(f"config gives an invalid shape for {key}: {_one_line(repr(shape))}")
    return tuple(int(d) for d in shape)


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    n = dtype.itemsize
    for d in shape:
        n *= d                  # Python ints: a crafted shape cannot overflow to a small number
    return n


def _check_member_names(found: set[str], expected: set[str]) -> None:
    missing, extra = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(f"missing members: {_listing(missing)}")
    if extra:
        parts.append(f"unexpected members: {_listing(extra)}")
    if parts:
        raise _Invalid("; ".join(parts))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, dtype: str | np.dtype,
                 shape: tuple[int, ...] | None) -> np.ndarray:
    """One member as an array of exactly dtype and shape (shape None: 1-D, for meta/config)."""
    dtype = np.dtype(dtype)
    try:
        with zf.open(info) as f:
            header_bytes, found_shape = _read_header(f, key, dtype)
            if shape is None:
                if len(found_shape) != 1 or found_shape[0] > MAX_CONFIG_BYTES:
                    raise _Invalid(f"{key} has shape {found_shape}; expected at most "
                                   f"{MAX_CONFIG_BYTES} bytes in one dimension")
                shape = found_shape
            elif found_shape != shape:
                raise _Invalid(f"{key} has shape {found_shape}, expected {shape}")
            nbytes = _nbytes(dtype, shape)
            if info.file_size != header_bytes + nbytes:
                raise _Invalid(f"truncated or corrupt ({key} declares {info.file_size} bytes "
                               f"but its header and shape need {header_bytes + nbytes})")
            data = _read_exactly(f, nbytes, key)
            if f.read(1) != b"":            # reaching EOF is what makes zipfile check the CRC
                raise _Invalid(f"truncated or corrupt (trailing data in member {key})")
    except _Invalid:
        raise
    except _PARSE_ERRORS as exc:
        raise _Invalid(f"truncated or corrupt ({_explain(exc)} in member {key})") from exc
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _read_header(f, key: str, dtype: np.dtype) -> tuple[int, tuple[int, ...]]:
    """(header length in bytes, shape) of the npy member open in f, checked against dtype."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise _Invalid(f"member {key} is not a .npy array (no npy magic)") from None
    if version != (1, 0):
        raise _Invalid(f"unsupported header in {key} (npy format {version[0]}.{version[1]}; "
                       "charlm writes 1.0)")
    try:
        with warnings.catch_warnings():
            # numpy warns, then re-parses, for Python 2 style headers; charlm never wrote those
            warnings.simplefilter("error")
            shape, fortran_order, found = np.lib.format.read_array_header_1_0(
                f, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, Warning) as exc:
        raise _Invalid(f"unsupported header in {key} ({_one_line(str(exc))[:120]})") from None
    if found.str != dtype.str or found.hasobject or found.names is not None:
        raise _Invalid(f"{key} has dtype {_one_line(found.str)}, expected {dtype.str}")
    if fortran_order:
        raise _Invalid(f"{key} is stored in Fortran order; charlm writes C order")
    if not all(type(d) is int for d in shape):     # bool passes numpy's isinstance(x, int)
        raise _Invalid(f"{key} has an invalid shape {_one_line(repr(shape))}")
    return f.tell(), shape


def _read_exactly(f, nbytes: int, key: str) -> bytearray:
    # grown as data arrives, not allocated up front: memory follows the bytes really present
    data = bytearray()
    while len(data) < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - len(data)))
        if not chunk:
            raise _Invalid(f"truncated or corrupt (member {key} ends early)")
        data += chunk
    return data


# ---- messages ----------------------------------------------------------------------------------

def _explain(exc: BaseException) -> str:
    """A few words for a parser's exception; the exception itself stays attached as __cause__."""
    text = str(exc)
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in text:
        return "CRC mismatch"
    if isinstance(exc, zlib.error):
        return "bad deflate data"
    if isinstance(exc, EOFError):
        return "unexpected end of data"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return _one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:160]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(name: str) -> str:
    """A member name fit for a one-line message, whatever bytes it holds."""
    shown = name if name.isprintable() else ascii(name)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _listing(names: list[str]) -> str:
    shown = ", ".join(_show(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _human_size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
