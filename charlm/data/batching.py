"""Stateful truncated-BPTT batches: B parallel streams over the training ids, T at a time.

The training ids are cut into B contiguous streams; window w takes the next T characters of
every stream, so the hidden state a step leaves is the right initial state for the next one
(gradients stop at the window boundary). After the last whole window the walk starts again.
"""

import numpy as np

from charlm.errors import CorpusError


def steps_per_epoch(n, batch_size, seq_len):
    """Windows per pass over n training ids; a CorpusError saying what to change if none fit."""
    B, T = batch_size, seq_len
    windows = (n - 1) // B // T
    if windows < 1:
        fits = [f"--{name} {value}" for name, value in
                (("seq-len", (n - 1) // B), ("batch-size", (n - 1) // T)) if value >= 1]
        raise CorpusError(
            f"the training split has {n} characters but one batch needs {B * T + 1}; "
            f"use a smaller --batch-size (now {B}) or --seq-len (now {T})"
            + (f", e.g. {' or '.join(fits)}" if fits else "") + ", or a longer text")
    return windows


class Windows:
    """The (T, B) inputs and targets of each window over ids (N,)."""

    def __init__(self, ids, batch_size, seq_len):
        self.ids, self.seq_len = ids, seq_len
        self.count = steps_per_epoch(len(ids), batch_size, seq_len)
        stream_len = (len(ids) - 1) // batch_size
        # (T, B) offsets of window 0; window w reads ids[base + w * T]
        self.base = np.arange(batch_size)[None, :] * stream_len + np.arange(seq_len)[:, None]

    def __getitem__(self, window):
        """(x, y), each (T, B): the characters of window `window` and the ones after them."""
        idx = self.positions(window)
        return self.ids[idx], self.ids[idx + 1]

    def positions(self, window):
        """(T, B) positions in ids of window `window`'s inputs."""
        return self.base + window * self.seq_len
