"""Reading the members of a `.npz` archive that may be hostile: caps first, then data.

Everything here parses untrusted bytes. Nothing is allocated or decompressed beyond what the
schema says the file must hold; every problem is an Invalid with a one-line reason that
charlm.io.npz prefixes with the path.
"""

from __future__ import annotations

import json
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from charlm.errors import CheckpointError, one_line

Schema = Callable[[dict, int], dict[str, tuple[str, tuple[int, ...]]]]

META_CONFIG = "meta/config"
META_FORMAT_VERSION = "meta/format_version"
MAX_MEMBERS = 256
MAX_HEADER_BYTES = 1024          # charlm's own headers are under 128 bytes
MAX_CONFIG_BYTES = 64 * 1024
MAX_RATIO = 1000                 # deflate tops out near 1032:1, so only crafted data gets past this
RATIO_MIN_BYTES = 1024 * 1024    # small members cannot hurt however well they compress
SAVE_KINDS = "biuf"              # bool, int, uint, float: plain data with no pickle or string form
_CHUNK = 1 << 20
_MAX_LISTED = 10

# What hostile bytes can make zipfile, zlib, json and np.lib.format raise. Anything else
# (AttributeError, NameError, AssertionError) is a bug in charlm, not dressed up as a bad file.
PARSE_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
    RuntimeError, OSError, ValueError, LookupError, TypeError, ArithmeticError, struct.error,
    MemoryError, Warning,
)


class Invalid(Exception):
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
        raise ValueError(f"duplicate JSON key {show(repeated[0])}")
    return dict(pairs)


def checked_members(zf: zipfile.ZipFile, file_size: int,
                     max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """{key: ZipInfo} once the archive's directory is known to be safe to read from."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise Invalid(f"{len(infos)} members; a checkpoint has at most {MAX_MEMBERS}")
    counts = Counter(info.filename for info in infos)
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise Invalid(f"duplicate member {show(repeated[0])}")
    # members cannot hold more bytes than the file has; this also refuses overlapping members
    stored = sum(info.compress_size for info in infos)
    if stored > file_size:
        raise Invalid(f"truncated or corrupt (members claim {stored} bytes of a "
                       f"{file_size}-byte file)")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise Invalid(f"members declare {human_size(total)} uncompressed, over the "
                       f"{human_size(max_bytes)} limit")
    for info in infos:
        _check_member_entry(info)
    return {info.filename[:-len(".npy")]: info for info in infos}


def _check_member_entry(info: zipfile.ZipInfo) -> None:
    name = show(info.filename)
    if info.is_dir():
        raise Invalid(f"directory entry {name} in the archive")
    if not info.filename.endswith(".npy"):
        raise Invalid(f"member {name} is not a .npy array")
    if info.flag_bits & 0x1:
        raise Invalid(f"member {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Invalid(f"member {name} uses compression method {info.compress_type}; "
                       "only stored and deflated are supported")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise Invalid(f"truncated or corrupt (sizes of stored member {name} disagree)")
    # the Keras guard: a large member that compresses this well is a bomb, not weights
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * info.compress_size:
        raise Invalid(f"member {name} expands {human_size(info.compress_size)} to "
                       f"{human_size(info.file_size)}; refusing a likely zip bomb")


def read_meta(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]) -> tuple[dict, int]:
    """meta/config and meta/format_version, read under their own small caps before anything else."""
    for key in (META_FORMAT_VERSION, META_CONFIG):
        if key not in infos:
            raise Invalid(f"not a charlm checkpoint (no {key} member)")
    raw_version = read_member(zf, infos[META_FORMAT_VERSION], META_FORMAT_VERSION, "<i8", ())
    raw_config = read_member(zf, infos[META_CONFIG], META_CONFIG, "|u1", None)
    try:
        config = array_to_json(raw_config)
    except (ValueError, RecursionError) as exc:     # UnicodeDecodeError and JSON errors included
        raise Invalid(f"{META_CONFIG} is not valid JSON ({one_line(str(exc))})") from None
    if not isinstance(config, dict):
        raise Invalid(f"{META_CONFIG} must be a JSON object, not {type(config).__name__}")
    return config, int(raw_version)


def expected_members(schema: Schema, config: dict, version: int,
                      max_bytes: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """The schema's answer, checked: its shapes come from the file's config, so are untrusted."""
    try:
        answer = schema(config, version)
    except CheckpointError:
        raise
    except Exception as exc:
        # a config the schema could not even index (a missing key, a string where an int goes)
        raise Invalid(f"unusable config ({type(exc).__name__}: {one_line(str(exc))})") from exc
    expected, total = {}, 0
    for key, (dtype_str, shape) in answer.items():
        assert key not in (META_CONFIG, META_FORMAT_VERSION), f"schema must not list {key}"
        dtype = np.dtype(dtype_str)
        assert dtype.kind in SAVE_KINDS and dtype.str[0] in "<|", f"schema dtype {dtype_str}"
        shape = _checked_shape(key, shape)
        total += array_nbytes(dtype, shape)
        expected[key] = (dtype, shape)
    if total > max_bytes:
        raise Invalid(f"config implies {human_size(total)} of arrays, over the "
                       f"{human_size(max_bytes)} limit")
    return expected


def _checked_shape(key: str, shape: Any) -> tuple[int, ...]:
    ok = isinstance(shape, tuple) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0
        for d in shape)
    if not ok:
        raise Invalid(f"config gives an invalid shape for {key}: {one_line(repr(shape))}")
    return tuple(int(d) for d in shape)


def array_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    n = dtype.itemsize
    for d in shape:
        n *= d                  # Python ints: a crafted shape cannot overflow to a small number
    return n


def check_member_names(found: set[str], expected: set[str]) -> None:
    missing, extra = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(f"missing members: {listing(missing)}")
    if extra:
        parts.append(f"unexpected members: {listing(extra)}")
    if parts:
        raise Invalid("; ".join(parts))


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, dtype: str | np.dtype,
                 shape: tuple[int, ...] | None) -> np.ndarray:
    """One member as an array of exactly dtype and shape (shape None: 1-D, for meta/config)."""
    dtype = np.dtype(dtype)
    try:
        with zf.open(info) as f:
            header_bytes, found_shape = _read_header(f, key, dtype)
            if shape is None:
                if len(found_shape) != 1 or found_shape[0] > MAX_CONFIG_BYTES:
                    raise Invalid(f"{key} has shape {found_shape}; expected at most "
                                   f"{MAX_CONFIG_BYTES} bytes in one dimension")
                shape = found_shape
            elif found_shape != shape:
                raise Invalid(f"{key} has shape {found_shape}, expected {shape}")
            nbytes = array_nbytes(dtype, shape)
            if info.file_size != header_bytes + nbytes:
                raise Invalid(f"truncated or corrupt ({key} declares {info.file_size} bytes "
                               f"but its header and shape need {header_bytes + nbytes})")
            data = _read_exactly(f, nbytes, key)
            if f.read(1) != b"":            # reaching EOF is what makes zipfile check the CRC
                raise Invalid(f"truncated or corrupt (trailing data in member {key})")
    except Invalid:
        raise
    except PARSE_ERRORS as exc:
        raise Invalid(f"truncated or corrupt ({explain(exc)} in member {key})") from exc
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _read_header(f, key: str, dtype: np.dtype) -> tuple[int, tuple[int, ...]]:
    """(header length in bytes, shape) of the npy member open in f, checked against dtype."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise Invalid(f"member {key} is not a .npy array (no npy magic)") from None
    if version != (1, 0):
        raise Invalid(f"unsupported header in {key} (npy format {version[0]}.{version[1]}; "
                       "charlm writes 1.0)")
    try:
        with warnings.catch_warnings():
            # numpy warns, then re-parses, for Python 2 style headers; charlm never wrote those
            warnings.simplefilter("error")
            shape, fortran_order, found = np.lib.format.read_array_header_1_0(
                f, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, Warning) as exc:
        raise Invalid(f"unsupported header in {key} ({one_line(str(exc))[:120]})") from None
    if found.str != dtype.str or found.hasobject or found.names is not None:
        raise Invalid(f"{key} has dtype {one_line(found.str)}, expected {dtype.str}")
    if fortran_order:
        raise Invalid(f"{key} is stored in Fortran order; charlm writes C order")
    if not all(type(d) is int for d in shape):     # bool passes numpy's isinstance(x, int)
        raise Invalid(f"{key} has an invalid shape {one_line(repr(shape))}")
    return f.tell(), shape


def _read_exactly(f, nbytes: int, key: str) -> bytearray:
    # grown as data arrives, not allocated up front: memory follows the bytes really present
    data = bytearray()
    while len(data) < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - len(data)))
        if not chunk:
            raise Invalid(f"truncated or corrupt (member {key} ends early)")
        data += chunk
    return data


# ---- messages ----------------------------------------------------------------------------------

def explain(exc: BaseException) -> str:
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
    return one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:160]


def show(name: str) -> str:
    """A member name fit for a one-line message, whatever bytes it holds."""
    shown = name if name.isprintable() else ascii(name)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def listing(names: list[str]) -> str:
    shown = ", ".join(show(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def human_size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
