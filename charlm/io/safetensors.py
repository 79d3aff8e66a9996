"""The safetensors format, read and written by charlm's own code (no `safetensors` package).

A file is an 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON, then
the raw little-endian data of every tensor:
    {"__metadata__": {"key": "value", ...},                 (optional; strings only)
     "rnn.weight_hh_l0": {"dtype": "F32", "shape": [48, 16], "data_offsets": [0, 3072]}, ...}
data_offsets are [begin, end) byte offsets into the data that follows the header.

Threat model: as for checkpoints (charlm.io.npz), the bytes may come from anywhere. The reader
checks the header length against a cap and the file's size before reading the header, parses
strict JSON (no NaN, no duplicate keys), and checks every entry before reading any data: a known
dtype, a shape whose bytes (counted in Python integers, which cannot overflow) equal its
offsets, offsets that tile the data exactly (in order, no gap, no overlap, nothing left over,
as the safetensors package itself requires), and then finite floats. Every failure is one
CheckpointError that starts with the path; nothing is allocated beyond the file's own size.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CheckpointError, OutputError, one_line
from charlm.fs import NotRegularFileError, open_regular, write_atomic
from charlm.io.npz import DEFAULT_MAX_BYTES
from charlm.io.npz_members import Invalid, array_nbytes, array_to_json, human_size, show

METADATA = "__metadata__"
MAX_HEADER_BYTES = 16 * 1024 * 1024     # room for a 1.1M-character vocabulary (the package: 100 MB)
MAX_TENSORS = 1024
MAX_DIMS = 8
_ALIGN = 8                              # the header is padded with spaces so data starts aligned
DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
          "I32": "<i4", "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8"}
UNSUPPORTED = {"BF16", "F8_E4M3", "F8_E5M2"}   # valid safetensors, but numpy has no such dtype
_NAMES = {np.dtype(v).str: k for k, v in DTYPES.items()}


@dataclass
class SafeTensors:
    """A checked file: every tensor has its declared dtype and shape, every float is finite."""

    path: Path
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]


# ---- writing -----------------------------------------------------------------------------------

def to_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The file's bytes: tensors in the order given, each C-ordered little-endian."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("safetensors metadata maps strings to strings")
    header, chunks, offset = {METADATA: dict(metadata)}, [], 0
    for name, value in tensors.items():
        arr = np.ascontiguousarray(value)
        if name == METADATA or arr.dtype.str not in _NAMES:
            raise ValueError(f"cannot write tensor {name!r} of dtype {arr.dtype.str}")
        data = arr.tobytes()
        header[name] = {"dtype": _NAMES[arr.dtype.str], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write(path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Atomically write a safetensors file (charlm.fs.write_atomic); OutputError if the OS
    refuses."""
    payload = to_bytes(tensors, metadata)
    try:
        write_atomic(path, payload)
    except OSError as exc:
        raise OutputError(f"could not write {os.fspath(path)}: "
                          f"{exc.strerror or exc}") from exc


# ---- reading -----------------------------------------------------------------------------------

def read(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SafeTensors:
    """Read and check the safetensors file at path, or raise one CheckpointError."""
    shown = os.fspath(path)
    try:
        with _open(shown) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise Invalid(f"file is {human_size(size)}, over the {human_size(max_bytes)} "
                              "limit")
            header_len, header = _read_header(f, size)
            metadata, entries = _check_header(header, size - 8 - header_len)
            data = f.read(size - 8 - header_len)
    except Invalid as exc:
        raise CheckpointError(f"{shown}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    try:
        tensors = _tensors(data, entries)
    except Invalid as exc:
        raise CheckpointError(f"{shown}: {exc}") from None
    return SafeTensors(Path(path), tensors, metadata)


def _open(path: str):
    try:
        return open_regular(path)
    except FileNotFoundError as exc:
        raise Invalid(f"cannot read: {exc.strerror or exc}") from None
    except NotRegularFileError as exc:
        raise Invalid(f"not a regular file ({exc.kind}); give a .safetensors file") from None


def _read_header(f, size: int) -> tuple[int, dict]:
    """(header length, the parsed header), both checked before anything else is read."""
    if size < 8:
        raise Invalid(f"not a safetensors file (only {size} bytes, less than its 8-byte "
                      "header length)")
    (header_len,) = struct.unpack("<Q", f.read(8))
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        past = "past the end of the file" if header_len > size - 8 else \
            f"over the {human_size(MAX_HEADER_BYTES)} limit"
        raise Invalid(f"not a safetensors file or truncated (header length {header_len} is "
                      f"{past}, {size} bytes)")
    raw = f.read(header_len)
    if len(raw) != header_len:
        raise Invalid("truncated (the header ends early)")
    try:
        header = array_to_json(np.frombuffer(raw, np.uint8), MAX_HEADER_BYTES)
    except (ValueError, RecursionError) as exc:        # UnicodeDecodeError included
        raise Invalid(f"the header is not valid JSON ({one_line(str(exc))[:120]})") from None
    if not isinstance(header, dict):
        raise Invalid(f"the header must be a JSON object, not {type(header).__name__}")
    return header_len, header


def _check_header(header: dict, data_len: int):
    """(metadata, [(name, dtype, shape, begin, end)] in data order), or Invalid."""
    metadata = header.pop(METADATA, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise Invalid(f"{METADATA} must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise Invalid(f"{len(header)} tensors; charlm reads at most {MAX_TENSORS}")
    entries = sorted((_entry(name, info, data_len) for name, info in header.items()),
                     key=lambda e: (e[3], e[4]))
    end = 0
    for name, _, _, begin, stop in entries:
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else "leaves a gap before it"
            raise Invalid(f"tensor {show(name)} {what} (data_offsets start at {begin}, the "
                          f"previous tensor ends at {end})")
        end = stop
    if end != data_len:
        raise Invalid(f"the tensors cover {end} bytes of data but the file holds {data_len} "
                      "after the header")
    return metadata, entries


def _entry(name: str, info, data_len: int):
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise Invalid(f"tensor {show(name)} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype in UNSUPPORTED:
        raise Invalid(f"tensor {show(name)} has dtype {dtype}, which charlm cannot read; "
                      "save it as float32 (tensor.float())")
    if dtype not in DTYPES:
        raise Invalid(f"tensor {show(name)} has an unknown dtype {one_line(repr(dtype))[:40]}")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_count(d) for d in shape)):
        raise Invalid(f"tensor {show(name)} has an invalid shape {one_line(repr(shape))[:80]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
            and offsets[0] <= offsets[1] <= data_len):
        raise Invalid(f"tensor {show(name)} has data_offsets {one_line(repr(offsets))[:80]} "
                      f"outside the {data_len} bytes of data")
    dtype = np.dtype(DTYPES[dtype])
    need = array_nbytes(dtype, tuple(shape))       # Python ints: a huge shape stays huge
    if need != offsets[1] - offsets[0]:
        raise Invalid(f"tensor {show(name)} of shape {shape[:MAX_DIMS]} needs {need} bytes "
                      f"but its data_offsets span {offsets[1] - offsets[0]}")
    return name, dtype, tuple(shape), offsets[0], offsets[1]


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _tensors(data: bytes, entries) -> dict[str, np.ndarray]:
    if len(data) != (entries[-1][4] if entries else 0):
        raise Invalid("truncated (the data ends early)")
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        arr = np.frombuffer(data, dtype, count=(end - begin) // dtype.itemsize,
                            offset=begin).reshape(shape).copy()
        if dtype.kind == "f":
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise Invalid(f"tensor {show(name)} has {bad} non-finite values")
        tensors[name] = arr
    return tensors
