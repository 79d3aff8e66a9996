"""Vocab: the Unicode code points seen in a corpus, and the id of each (its index).

A corpus's vocabulary is sorted by code point; a model with an adaptive softmax ranks it by
frequency instead (by_frequency), most frequent first, since its clusters are ranges of ids.

Dimensions: V vocabulary size, N text length in code points.
The model works on code points, not graphemes: "é" may be one or two ids, a family emoji five.
There is no cap on V: ids are uint8 for V <= 256, uint16 for V <= 65536, else uint32, so a large
vocabulary never wraps silently. The checkpoint stores the vocabulary as int32 code points
(to_array / from_array), because numpy string arrays drop NUL characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from charlm.errors import CorpusError, UsageError

MAX_CODEPOINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
UNKNOWN_MODES = ("error", "skip")
MAX_NAMED = 5          # offending characters named in one error message


def codepoints_of(text: str) -> np.ndarray:
    """(N,) uint32 code points of text, without a Python loop per character."""
    # surrogatepass: a lone surrogate (e.g. from a surrogateescape'd argv) becomes an unknown id
    # instead of an encoder crash
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")


class Vocab:
    """Unique code points <-> ids. Immutable; construction validates like from_array."""

    def __init__(self, codepoints: Sequence[int] | np.ndarray):
        cps = _validated(np.asarray(codepoints))
        cps.setflags(write=False)
        self._cps = cps                          # (V,) int32, unique
        self._table: np.ndarray | None = None    # (max code point + 1,) int32 id or -1; lazy

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Vocab:
        """Rebuild from a stored (V,) array; ValueError with a short reason if it is invalid."""
        return cls(arr)

    def to_array(self) -> np.ndarray:
        """(V,) int32 code points, a fresh writable copy for the checkpoint."""
        return self._cps.copy()

    @property
    def size(self) -> int:
        return len(self._cps)

    @property
    def codepoints(self) -> np.ndarray:
        """(V,) int32, read-only."""
        return self._cps

    @property
    def id_dtype(self) -> type[np.unsignedinteger]:
        """The smallest unsigned dtype that holds every id (ids go from 0 to V - 1)."""
        if self.size <= 2**8:
            return np.uint8
        if self.size <= 2**16:
            return np.uint16
        return np.uint32

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and np.array_equal(self._cps, other._cps)

    def __repr__(self) -> str:
        return f"Vocab(size={self.size})"

    def char(self, i: int) -> str:
        """The character with id i."""
        return chr(self._cps[i])

    def index(self, ch: str) -> int | None:
        """The id of the single character ch, or None if it is not in the vocabulary."""
        if len(ch) != 1:
            raise ValueError(f"index() takes one character, got {len(ch)}")
        i = int(self._lookup(np.array([ord(ch)], np.int64))[0])
        return i if i >= 0 else None

    def by_frequency(self, ids: np.ndarray) -> tuple[Vocab, np.ndarray]:
        """This vocabulary ranked by how often each id occurs in ids (N,), most frequent first,
        ties by code point: (ranked Vocab, (V,) new id of each old id)."""
        counts = np.bincount(np.asarray(ids), minlength=self.size)
        order = np.lexsort((self._cps, -counts))              # old ids, most frequent first
        new_id = np.empty(self.size, self.id_dtype)
        new_id[order] = np.arange(self.size)
        return Vocab(self._cps[order]), new_id

    def extended(self, other: Vocab) -> Vocab:
        """This vocabulary with the code points of other that it lacks appended, in code-point
        order: every id of this one keeps its character (fine-tuning on a new text)."""
        new = np.setdiff1d(other.codepoints, self._cps)        # sorted
        return Vocab(np.concatenate([self._cps, new])) if len(new) else self

    def encode(self, text: str, unknown: str = "error",
               what: str = "text") -> tuple[np.ndarray, int]:
        """text -> ((N',) ids in id_dtype, number of characters skipped). See encode_codepoints;
        what names the text in an error (e.g. "--prime")."""
        return self.encode_codepoints(codepoints_of(text), unknown, what=what)

    def encode_codepoints(self, cps: np.ndarray, unknown: str = "error",
                          start: int = 0, what: str = "text") -> tuple[np.ndarray, int]:
        """(N,) code points -> ((N',) ids in id_dtype, number skipped).

        unknown="error" raises CorpusError naming the characters outside the vocabulary;
        unknown="skip" drops them (N' = N - skipped). start is the position of cps[0] in the
        whole text, so a streaming caller's error messages give positions in the whole text.
        """
        if unknown not in UNKNOWN_MODES:
            raise UsageError(f"--unknown {unknown!r} is invalid; use error or skip")
        ids = self._lookup(cps)                  # (N,) int32, -1 where unknown
        bad = ids < 0
        if not bad.any():
            return ids.astype(self.id_dtype), 0
        if unknown == "error":
            raise CorpusError(_unknown_message(cps, bad, start, what))
        return ids[~bad].astype(self.id_dtype), int(bad.sum())

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """(N,) ids -> text."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must be in [0, {self.size}); got {ids.min()}..{ids.max()}")
        return self._cps[ids].astype("<u4").tobytes().decode("utf-32-le")

    def _lookup(self, cps: np.ndarray) -> np.ndarray:
        """(N,) code points -> (N,) int32 ids, -1 where absent. A dense table: O(N), no sort."""
        if self._table is None:
            table = np.full(int(self._cps.max()) + 1, -1, np.int32)  # at most 4.4 MB
            table[self._cps] = np.arange(self.size, dtype=np.int32)
            self._table = table
        top = len(self._table) - 1
        inside = cps <= top
        if inside.all():
            return self._table[cps]
        ids = np.full(len(cps), -1, np.int32)
        ids[inside] = self._table[cps[inside]]
        return ids


def _validated(arr: np.ndarray) -> np.ndarray:
    """(V,) int32 copy of arr after checking it is a valid vocabulary; ValueError otherwise."""
    if arr.ndim != 1:
        raise ValueError(f"vocabulary must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"vocabulary must hold integers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("vocabulary is empty")
    # range checks come before the int32 cast, which would wrap large values
    if arr.min() < 0 or arr.max() > MAX_CODEPOINT:
        raise ValueError("vocabulary holds a value outside the Unicode range 0..0x10FFFF")
    cps = arr.astype(np.int32)
    if np.any((cps >= SURROGATES[0]) & (cps <= SURROGATES[1])):
        raise ValueError("vocabulary holds a surrogate code point (U+D800..U+DFFF)")
    if len(np.unique(cps)) != len(cps):
        raise ValueError("vocabulary holds a code point twice")
    return cps


def _unknown_message(cps: np.ndarray, bad: np.ndarray, start: int, what: str) -> str:
    """One line naming up to MAX_NAMED distinct unknown characters, in order of first appearance."""
    positions = np.flatnonzero(bad)
    distinct, first = np.unique(cps[positions], return_index=True)
    order = np.argsort(first)[:MAX_NAMED]
    named = [f"{chr(distinct[k])!r} U+{int(distinct[k]):04X} first at index "
             f"{start + int(positions[first[k]])}" for k in order]
    more = ", ..." if len(distinct) > MAX_NAMED else ""
    return (f"{what} has {len(positions)} character(s) outside the model's vocabulary "
            f"({len(distinct)} "
            f"distinct): {', '.join(named)}{more}; remove them or pass --unknown skip")
