"""What a large vocabulary (Chinese text: thousands of characters) changes in a run's settings.

From ADAPTIVE_FROM distinct characters up, a run whose user did not choose them gets a learned
input embedding of DEFAULT_EMBED dimensions instead of the one-hot input, and an adaptive
softmax instead of the full one: the one-hot input weights and the (V, H) head are then most
of the parameters and of every step's time (measured: README, "Large vocabularies"). The
adaptive softmax's clusters are ranges of ids, so its run ranks the vocabulary by frequency in
the training split; its cutoffs, unless given, cover shares of that split's text.
"""

from dataclasses import replace

import numpy as np

from charlm.errors import UsageError
from charlm.nn import adaptive, output
from charlm.train.autosize import Adaptive
from charlm.train.config import ADAPTIVE_FROM, DEFAULT_EMBED
from charlm.train.trainer import parse_cutoffs

SHARES = (0.8, 0.95, 0.99)      # of the training text covered by the shortlist, then clusters
# A run that time does not limit (auto-size stops it after enough passes, with the budget to
# spare) affords a larger shortlist, which fits a small text better: 400 Tang poems, 2x128
# GRU, 24 passes, four seeds: cutoffs 1013,2056 (these shares) 4.857 nats on average,
# every seed better than SHARES' 558,1487,2413 (4.900); at V = 6,000 (Zipf) it trains
# 26% slower (1448 characters in the shortlist against 417).
MEMORISING_SHARES = (0.9, 0.98)


def defaults(tcfg, given, vocab_size):
    """tcfg with the large-vocabulary defaults where they apply and the user chose neither
    setting; and the line that says so (None when nothing changed)."""
    if vocab_size < ADAPTIVE_FROM:
        return tcfg, None
    changed = {}
    if "embed" not in given:
        changed["embed"] = DEFAULT_EMBED
    if "softmax" not in given:
        changed["softmax"] = output.ADAPTIVE
    if not changed:
        return tcfg, None
    what = " and ".join(f"an input embedding of {changed['embed']}" if k == "embed" else
                        "an adaptive softmax" for k in changed)
    opts = " or ".join("--embed 0" if k == "embed" else "--softmax full" for k in changed)
    return replace(tcfg, **changed), (
        f"a vocabulary of {vocab_size:,} characters (from {ADAPTIVE_FROM:,} up): using {what}, "
        f"which train faster and fit better than one-hot weights and a full softmax over every "
        f"character; {opts} to turn off")


def check(tcfg, given, vocab_size):
    """A UsageError for adaptive-softmax settings that cannot work."""
    adaptive_given = {"cutoffs", "div_value"} & given.keys()
    if tcfg.softmax != output.ADAPTIVE and adaptive_given:
        names = " and ".join(f"--{k.replace('_', '-')}" for k in sorted(adaptive_given))
        raise UsageError(f"{names} only apply to the adaptive softmax; add --softmax adaptive")
    if tcfg.softmax != output.ADAPTIVE or not tcfg.cutoffs:
        return
    try:
        adaptive.check_cutoffs(parse_cutoffs(tcfg.cutoffs), vocab_size, tcfg.hidden,
                               tcfg.div_value)
    except ValueError as exc:
        raise UsageError(f"--cutoffs {tcfg.cutoffs} is invalid: {exc}; give increasing ids "
                         "such as 500,2000") from None


def with_cutoffs(tcfg, train_ids, vocab_size, shares=SHARES):
    """tcfg with cutoffs chosen from the frequency-ranked training ids, unless given."""
    if tcfg.softmax != output.ADAPTIVE or tcfg.cutoffs:
        return tcfg
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size)
    cuts = adaptive.frequency_cutoffs(counts, shares)
    # a cluster needs an inner size of at least one at this hidden size
    while len(cuts) > 1 and int(tcfg.hidden // tcfg.div_value ** len(cuts)) < 1:
        cuts = cuts[:-1]
    return replace(tcfg, cutoffs=",".join(str(c) for c in cuts))


def memorising_cutoffs(tcfg, train_ids, vocab_size):
    """tcfg with MEMORISING_SHARES' cutoffs, and the words that say so."""
    tcfg = with_cutoffs(replace(tcfg, cutoffs=""), train_ids, vocab_size, MEMORISING_SHARES)
    return tcfg, (f"; with time to spare, a larger shortlist (cutoffs {tcfg.cutoffs}: "
                  f"{MEMORISING_SHARES[0]:.0%} of the text), which fits a small text better")


def autosize_view(tcfg, train_ids):
    """The run's adaptive softmax as auto-size counts it (None for the full softmax): its
    cutoffs and the share of training targets in each cluster."""
    if tcfg.softmax != output.ADAPTIVE:
        return None
    cutoffs = parse_cutoffs(tcfg.cutoffs)
    ranked = np.sort(np.asarray(train_ids[1:]))
    bounds = np.searchsorted(ranked, (*cutoffs, np.iinfo(np.int64).max))
    shares = tuple(float(n) / max(len(ranked), 1) for n in np.diff(bounds))
    return Adaptive(cutoffs, tcfg.div_value, shares)
