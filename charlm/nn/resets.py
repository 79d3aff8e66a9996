"""Documents: the hidden state restarts where a separator ends (`charlm train --reset-at`).

Poems, fortunes or names joined by a separator (for example "\\n%\\n") are independent; what the
state carries from one into the next is noise. With a separator, the state is zeroed before
the model reads the last character of each occurrence: that character then starts the next
document from the zero state, as the first character of a text does, and nothing of one
document reaches the next. The separator's earlier characters are still predicted from the
document they close, so the model learns where documents end. Overlapping occurrences
("\\n\\n" in "\\n\\n\\n") each restart.

So, for texts A and B in which no occurrence of the separator sep overlaps a join,
    score(A + sep + B) = score(A + sep) + score(sep[-1] + B)
(charlm.nn.inference.score_ids): every document is scored as a text that starts with the
separator's last character.

Training, scoring and sampling apply the same rule through a mask keep (T, 1, B): 0 where the
state that enters step t of stream b restarts, else 1. The cells multiply the carried state by
it where the state passes from one step to the next (`carried`), and their backward passes
multiply the state's gradient by it on the way back.
"""

from collections import deque

import numpy as np


def restarts(ids, sep_ids):
    """(N,) bool: True at i where ids[i - k + 1 .. i] is the separator sep_ids (k ids), so the
    state restarts before ids[i] is read. All False without a separator."""
    ids = np.asarray(ids)
    found = np.zeros(len(ids), bool)
    k = len(sep_ids)
    if k == 0 or len(ids) < k:
        return found
    match = ids[k - 1:] == sep_ids[-1]
    for j in range(k - 1):                     # the earlier characters, each shifted into place
        match &= ids[j:len(ids) - k + 1 + j] == sep_ids[j]
    found[k - 1:] = match
    return found


def keep_mask(restart, dtype):
    """(T, 1, B) of dtype, 0 where restart (T, B) is set, else 1; None where nothing restarts
    (the cells then take their plain path)."""
    if not restart.any():
        return None
    return np.logical_not(restart)[:, None, :].astype(dtype)


def carried(part, keep_t, out):
    """The state part (H, B) that enters a step: part * keep_t (1, B), written into out."""
    return np.multiply(part, keep_t, out=out)


class Watcher:
    """For sampling, one character at a time: says whether the state restarts before a
    character, by the rule of `restarts` over the characters seen so far."""

    def __init__(self, sep_ids):
        self.sep = [int(i) for i in sep_ids]
        self.recent = deque(maxlen=len(self.sep))

    def restarts_before(self, char_id):
        self.recent.append(int(char_id))
        return len(self.recent) == len(self.sep) and list(self.recent) == self.sep

    def clear(self):
        self.recent.clear()
