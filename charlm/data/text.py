"""Corpora and evaluation texts -> ids. The only module that reads corpus files.

Dimensions: N text length in code points, V vocabulary size.
Policy (reliability.md section 6): files are opened in binary mode and decoded as UTF-8 by an
incremental decoder, CHUNK_BYTES at a time, so memory stays bounded and a character split across
two chunks decodes whole. Strict by default; encoding_errors="replace" maps invalid bytes to U+FFFD.
One leading UTF-8 BOM per file is dropped; newlines are kept exactly (CR LF stays CR LF).
A corpus is read twice: pass 1 finds the vocabulary and N, pass 2 writes the ids. Large id arrays
go to charlm's own temp file, memory-mapped read-only; the user's corpus is never mapped, since
truncating a mapped file kills the reader with SIGBUS.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlm.data.idcache import memmapped
from charlm.data.vocab import MAX_CODEPOINT, Vocab, codepoints_of
from charlm.errors import CorpusError, UsageError
from charlm.fs import NotRegularFileError, open_regular

PathLike = str | os.PathLike

CHUNK_BYTES = 8 * 2**20          # bytes decoded at a time
MEMMAP_MIN_BYTES = 64 * 2**20    # id arrays at least this large live in a memory-mapped temp file
SNIFF_BYTES = 8192               # head of each file checked for foreign BOMs and NUL bytes
LARGE_VOCAB = 10_000             # above this, warn: the (V, H) matrices get large
ENCODING_ERRORS = ("strict", "replace")
# UTF-32 is tested first because the UTF-16-LE BOM FF FE begins the UTF-32-LE one
FOREIGN_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


@dataclass
class Corpus:
    """A corpus read into ids, with what the checkpoint needs to recognise it later."""

    vocab: Vocab
    ids: np.ndarray                  # (N,) vocab.id_dtype; a read-only memmap when large
    fingerprint: dict                # {"chars": N, "sha256": of the raw bytes, "files": count}
    warnings: list[str] = field(default_factory=list)   # skipped files, NUL bytes, replacements


def read_corpus(paths: Sequence[PathLike], encoding_errors: str = "strict") -> Corpus:
    """Files and directories, concatenated as-is in the given order -> Corpus with (N,) ids."""
    _check_encoding_errors(encoding_errors)
    if isinstance(paths, (str, os.PathLike)):    # a lone str is a Sequence of one-letter paths
        paths = [paths]
    if not paths:
        raise UsageError("no corpus given; pass a UTF-8 text file or a directory of them")
    name = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    warnings: list[str] = []
    files = _list_files(paths, encoding_errors, warnings)
    if not files:
        raise CorpusError(f"corpus {name} has no readable text files; give UTF-8 text files")
    seen, total = _scan(files, encoding_errors, warnings)
    if total == 0:
        raise CorpusError(f"corpus {name} is empty; give a UTF-8 text file of a few thousand "
                          "characters")
    vocab = Vocab(np.flatnonzero(seen))
    if vocab.size == 1:
        raise CorpusError(f"corpus {name} has only one distinct character ({vocab.char(0)!r} "
                          f"U+{int(vocab.codepoints[0]):04X}): the model cannot learn anything "
                          "from one symbol; give a text with varied characters")
    if vocab.size > LARGE_VOCAB:
        warnings.append(f"vocabulary has {vocab.size} symbols; the (V, H) weights will be large")
    ids, sha256 = _encode_files(files, vocab, total, encoding_errors)
    return Corpus(vocab, ids, {"chars": total, "sha256": sha256, "files": len(files)}, warnings)


def ranked_by_frequency(corpus: Corpus, counted: int) -> Corpus:
    """corpus with its vocabulary ranked by how often each character occurs in its first
    counted characters (the training split), most frequent first, and its ids renumbered."""
    vocab, new_id = corpus.vocab.by_frequency(corpus.ids[:counted])
    return Corpus(vocab, new_id[corpus.ids], corpus.fingerprint, corpus.warnings)


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(N,) ids -> train (N - M,), val (M,) as views; M = int(N * val_frac), the contiguous tail."""
    if not 0 <= val_frac < 1:                    # also false for NaN
        raise UsageError(f"validation fraction must be in [0, 1), got {val_frac}; try 0.1")
    n_train = len(ids) - int(len(ids) * val_frac)
    return ids[:n_train], ids[n_train:]


def encode_file(path: PathLike, vocab: Vocab, unknown: str = "error",
                encoding_errors: str = "strict") -> tuple[np.ndarray, int]:
    """An evaluation text -> ((N,) ids in vocab.id_dtype, number of characters skipped)."""
    _check_encoding_errors(encoding_errors)
    _checked_head(path)
    parts, skipped, start = [], 0, 0
    for _, text in _decoded_chunks(path, encoding_errors):
        cps = codepoints_of(text)                # (n,) this chunk
        try:
            ids, n_skipped = vocab.encode_codepoints(cps, unknown, start)
        except CorpusError as e:
            raise CorpusError(f"{path}: {e}") from None
        parts.append(ids)
        skipped, start = skipped + n_skipped, start + len(cps)
    ids = np.concatenate(parts)                  # (N,)
    if start == 0:
        raise CorpusError(f"{path} is empty; give a UTF-8 text file")
    if len(ids) == 0:
        raise CorpusError(f"all {start} characters of {path} are outside the model's vocabulary; "
                          "give text written like the training corpus")
    return ids, skipped


def read_text_file(path: PathLike, encoding_errors: str = "strict") -> str:
    """A small text file (a prime, say) as one str, under the same reading rules as a corpus."""
    _check_encoding_errors(encoding_errors)
    _checked_head(path)
    return "".join(text for _, text in _decoded_chunks(path, encoding_errors))


def _check_encoding_errors(encoding_errors: str) -> None:
    if encoding_errors not in ENCODING_ERRORS:
        raise UsageError(f"--encoding-errors {encoding_errors!r} is invalid; use strict or replace")


def _list_files(paths: Sequence[PathLike], encoding_errors: str, warnings: list[str]) -> list[Path]:
    """The files to read, in order. Named files must be text; directories skip binary files."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += _files_under(path, encoding_errors, warnings)
            continue
        nul = _checked_head(path).count(b"\0")
        if nul:
            warnings.append(f"{path} looks binary ({nul} NUL bytes in its first {SNIFF_BYTES} "
                            "bytes); reading it as text anyway")
        files.append(path)
    return files


def _files_under(root: Path, encoding_errors: str, warnings: list[str]) -> list[Path]:
    """Non-hidden text files below root, in sorted path order; others skipped with a warning."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: warnings.append(
            f"skipped {e.filename}: {e.strerror}")):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if not f.startswith(".")]
    found.sort(key=lambda p: p.relative_to(root).parts)   # by parts: a/x.txt before a.txt
    kept = []
    for path in found:
        reason = _skip_reason(path, encoding_errors)
        if reason:
            warnings.append(f"skipped {path}: {reason}")
        else:
            kept.append(path)
    return kept


def _skip_reason(path: Path, encoding_errors: str) -> str | None:
    """Why a file found in a directory is not text, or None if it should be read."""
    if not path.is_file():                       # FIFOs, devices, sockets, broken links
        return "not a regular file"
    try:
        head = _head(path)
    except CorpusError:
        return "cannot be read"
    bom = _foreign_bom(head)
    if bom or b"\0" in head:
        return f"looks like {bom}; convert it to UTF-8" if bom else "looks binary (NUL bytes)"
    try:
        if encoding_errors == "strict":          # a head shorter than SNIFF_BYTES is the whole file
            codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError:
        return "not UTF-8 (pass --encoding-errors replace to read it anyway)"
    return None


def _checked_head(path: PathLike) -> bytes:
    """The first SNIFF_BYTES of path, refusing what is missing, not a regular file, or UTF-16/32."""
    head = _head(path)
    bom = _foreign_bom(head)
    if bom:
        raise CorpusError(f"{path} looks like {bom} (BOM {head[:4].hex(' ').upper()}); "
                          f"convert it to UTF-8, e.g. iconv -f {bom} -t UTF-8")
    return head


def _foreign_bom(head: bytes) -> str | None:
    return next((name for bom, name in FOREIGN_BOMS if head.startswith(bom)), None)


def _head(path: PathLike) -> bytes:
    with _open_regular(path) as f:
        return f.read(SNIFF_BYTES)


def _open_regular(path: PathLike) -> BinaryIO:
    """Open for binary reading, refusing anything but a regular file before reading a byte."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise CorpusError(f"{path} does not exist; give a UTF-8 text file or a directory") from None
    except NotRegularFileError as e:
        raise CorpusError(f"{path} is {e.kind}, not a regular file; "
                          "give a UTF-8 text file") from None
    except OSError as e:
        raise CorpusError(f"cannot open {path}: {e.strerror}") from None


def _decoded_chunks(path: PathLike, encoding_errors: str) -> Iterator[tuple[bytes, str]]:
    """(raw bytes, decoded text) per chunk, ending with (b"", tail); drops one leading BOM."""
    decoder = codecs.getincrementaldecoder("utf-8")(encoding_errors)
    at_start = True                              # until the first character, U+FEFF is the BOM
    offset = 0                                   # bytes of the file read before this chunk
    with _open_regular(path) as f:
        while True:
            try:
                raw = f.read(CHUNK_BYTES)
            except OSError as e:
                raise CorpusError(f"cannot read {path}: {e.strerror}") from None
            pending = len(decoder.getstate()[0])   # bytes of a split character, from the last chunk
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:      # e.start counts from the pending bytes
                raise _decode_error(path, offset - pending + e.start, e) from None
            offset += len(raw)
            if at_start and text:
                text, at_start = text.removeprefix("\ufeff"), False
            yield raw, text
            if not raw:
                return


def _decode_error(path: PathLike, offset: int, e: UnicodeDecodeError) -> CorpusError:
    """The error for invalid UTF-8 at byte offset; its line is counted only now, reading again."""
    line, left = 1, offset
    with _open_regular(path) as f:
        while left > 0 and (raw := f.read(min(CHUNK_BYTES, left))):
            line, left = line + raw.count(b"\n"), left - len(raw)
    bad = e.object[e.start:min(e.end, e.start + 8)].hex(" ").upper()
    return CorpusError(f"{path} is not valid UTF-8: byte offset {offset} (line {line}) holds bytes "
                       f"{bad}; convert it (e.g. iconv -f latin1 -t utf-8) or pass "
                       "--encoding-errors replace")


def _scan(files: list[Path], encoding_errors: str, warnings: list[str]) -> tuple[np.ndarray, int]:
    """Pass 1: (0x110000,) bool table of the code points present, and N."""
    seen = np.zeros(MAX_CODEPOINT + 1, dtype=bool)   # a presence table is O(N); np.unique sorts
    total = 0
    for path in files:
        replaced, window = 0, b""
        for raw, text in _decoded_chunks(path, encoding_errors):
            cps = codepoints_of(text)            # (n,) uint32
            seen[cps] = True
            total += len(cps)
            if encoding_errors == "replace":
                # made by the decoder = U+FFFD decoded - EF BF BD in the file; the 2-byte carry
                # catches one split across chunks and cannot hold a whole one, so none counts twice
                window = window[-2:] + raw
                replaced += text.count("\ufffd") - window.count("\ufffd".encode())
        if replaced:
            warnings.append(f"{path}: {replaced} invalid UTF-8 sequence(s) replaced by U+FFFD")
    return seen, total


def _encode_files(files: list[Path], vocab: Vocab, total: int,
                  encoding_errors: str) -> tuple[np.ndarray, str]:
    """Pass 2: (N,) ids of all files in order, and the sha256 of the bytes they came from."""
    digest = hashlib.sha256()

    def chunks() -> Iterator[np.ndarray]:
        written = 0
        for path in files:
            changed = CorpusError(f"{path} changed while it was being read; run again when it "
                                  "is complete")
            for raw, text in _decoded_chunks(path, encoding_errors):
                digest.update(raw)
                try:                             # pass 1 saw every character of an unchanged file
                    ids, _ = vocab.encode_codepoints(codepoints_of(text))
                except CorpusError:
                    raise changed from None
                written += len(ids)
                if written > total:
                    raise changed
                yield ids
        if written != total:
            raise changed

    dtype = np.dtype(vocab.id_dtype)
    if total * dtype.itemsize < MEMMAP_MIN_BYTES:
        return np.concatenate(list(chunks())), digest.hexdigest()   # small: a transient copy is ok
    return memmapped(chunks(), total, dtype), digest.hexdigest()
