"""Where the ids of a large corpus live: a memory-mapped temp file of charlm's own.

The file is unlinked as soon as it is mapped, so nothing is left behind however the process
ends; the user's corpus itself is never mapped, since truncating a mapped file kills the
reader with SIGBUS.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from charlm.errors import OutputError


def memmapped(chunks: Iterator[np.ndarray], total: int, dtype: np.dtype) -> np.ndarray:
    """(N,) read-only memmap of the ids, written to a temp file of ours, unlinked at once."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory, name = os.path.join(base, "charlm"), ""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        directory = tempfile.gettempdir()
    try:
        fd, name = tempfile.mkstemp(prefix="ids-", suffix=".bin", dir=directory)
        # plain writes, not a writable map: a full disk gives OSError here instead of SIGBUS
        with os.fdopen(fd, "wb") as f:
            for ids in chunks:
                f.write(ids.tobytes())
        return np.memmap(name, dtype=dtype, mode="r", shape=(total,))
    except OSError as e:
        raise OutputError(f"cannot write the id cache in {directory}: {e.strerror}; free some "
                          "space or point XDG_CACHE_HOME elsewhere") from None
    finally:
        if name:
            with contextlib.suppress(OSError):   # the open map keeps the data until it is dropped
                os.unlink(name)
