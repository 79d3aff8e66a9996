"""Choosing the model size for a time budget when the user leaves it to charlm.

On a CPU, a model that is too big for the budget sees too few characters and a model that is
too small stops improving early; size matters more than anything else. The rule:

1. Time two short training probes (a small and a large 2-layer model of the chosen cell at
   batch 32 x 64) and fit seconds per step = a + b * (multiply-adds per character), which
   covers both the fixed per-step cost of numpy calls and the matrix work.
2. Predict, for each candidate size, how many characters it will see in the training part of
   the budget (the budget minus the probes, the validation passes and the checkpoints).
3. Take the largest candidate that sees at least CHARS_PER_PARAM characters per parameter and
   has at most MAX_PARAMS_PER_CHAR parameters per training character (a small corpus is
   memorised, not learnt, by a huge model).
   When even the smallest breaks the second rule, MEMORISING (two layers, so that dropout
   acts between them).
4. Dropout grows with the number of passes over the corpus the run will make: none below
   6 passes (measured on tiny Shakespeare, 2x192 at 2.6 passes: dropout 0.1 cost 0.009 nats;
   2x256 at 4.4 passes: 0.016), 0.1 below 12, 0.2 beyond; one step more (0.1) when such a
   run's model also has more than one parameter per training character (tiny Shakespeare:
   2x384 GRU, 1.4 per character, 7.9 passes: dropout 0.2 1.446 against 0.1 1.466; 2x256,
   0.66 per character, 7.7 passes: 0.2 1.480 against 0.1 1.464); 0.3 from 24 passes and
   0.4 from 48 (zh-tang-song, 2x128 with an embedding of 64, 16 parameters per character,
   about 70 passes in 60 s: dropout 0.5 4.973 nats against 0.3 5.121 for 1x128).
5. A text the budget would pass over more than ENOUGH_PASSES times is learnt by heart well
   before: the run stops after ENOUGH_PASSES passes, with the learning-rate schedule laid over
   them, so that the rate has decayed by the time the model starts to memorise (zh-tang-song,
   2x128 GRU, dropout 0.5, the schedule over 12 / 24 / 48 passes: best validation 4.927 /
   4.894 / 4.915 nats, and over a 120 s budget's ~130 passes 4.987). When the budget covers
   those passes 1.5 times over, time does not limit the run, and an adaptive softmax whose cutoffs
   charlm chooses gets a larger shortlist (charlm.train.largevocab.MEMORISING_SHARES).
"""

import time
from typing import NamedTuple

from charlm.nn import adaptive as adaptive_softmax
from charlm.nn.cells import CELLS

CANDIDATES = ((1, 128), (2, 128), (2, 192), (2, 256), (2, 384), (2, 512))
# When even the smallest has too many parameters for the corpus, the run memorises it: two
# layers, whose dropout acts between them, do better than one (zh-tang-song, 35k characters,
# 30 s: 1x128 dropout 0.5 5.066 nats, 2x128 0.5 4.973; the 4-gram 5.047)
MEMORISING = (2, 128)
PROBES = ((2, 128), (2, 384))
CHARS_PER_PARAM = 4.0
MAX_PARAMS_PER_CHAR = 2.0
BIG_PARAMS_PER_CHAR = 1.0       # above this, a run of many passes gets one more dropout step
ENOUGH_PASSES = 24
TRAIN_SHARE = 0.85              # of the budget left after probing; the rest validates and saves


class Adaptive(NamedTuple):
    """An adaptive softmax as auto-size counts it: its cutoffs and div_value, and the share of
    the training targets that falls in each cluster (what each cluster costs per character)."""
    cutoffs: tuple
    div_value: float
    shares: tuple


def parameter_count(cell, vocab_size, layers, hidden, embed=0, adaptive=None, directions=1):
    """directions: 2 for the bidirectional model (two stacks, a head reading 2H)."""
    G, V, H = CELLS[cell].GATES, vocab_size, hidden
    D = embed or V                              # what layer 0 reads
    count = V * embed + directions * (G * H * (D + H + 2) + (layers - 1) * G * H * (2 * H + 2))
    if adaptive is None:
        return count + V * (directions * H + 1)
    shapes = adaptive_softmax.param_shapes(V, directions * H, adaptive.cutoffs,
                                           adaptive.div_value)
    return count + sum(rows * cols for rows, cols in shapes.values())


def macs_per_char(cell, vocab_size, layers, hidden, embed=0, adaptive=None, directions=1):
    """Multiply-adds per character in the forward pass (a one-hot input layer is a gather and
    free; an embedded one is a (G*H, E) product; an adaptive softmax's cluster costs only the
    characters whose target is in it). directions: 2 for the bidirectional model, whose two
    stacks each cost what one does and whose head reads 2H."""
    G, V, H = CELLS[cell].GATES, vocab_size, hidden
    recurrent = directions * (G * H * H * layers + G * H * H * (layers - 1) + G * H * embed)
    H *= directions                             # what the output layer reads
    if adaptive is None:
        return recurrent + V * H
    shapes = adaptive_softmax.param_shapes(V, H, adaptive.cutoffs, adaptive.div_value)
    head_rows = shapes["head.weight"][0]
    tails = sum(share * (shapes[f"tail.{i}.0.weight"][0] * H + rows * cols)
                for i, share in enumerate(adaptive.shares)
                for rows, cols in [shapes[f"tail.{i}.1.weight"]])
    return recurrent + head_rows * H + tails


def dropout_for(epochs, params_per_char=0.0):
    """More passes over the same text, and more parameters per character, need more
    regularisation."""
    if epochs < 6:
        return 0.0
    rung = 0.1 if epochs < 12 else 0.2 if epochs < 24 else 0.3 if epochs < 48 else 0.4
    return round(rung + 0.1, 2) if params_per_char > BIG_PARAMS_PER_CHAR else rung


class Choice(NamedTuple):
    layers: int
    hidden: int
    dropout: float
    reason: str                 # the line the user reads
    predicted_chars: int        # training characters the run should see
    passes: float = 0.0         # stop after this many passes over the text; 0 = the budget
    budget_passes: float = 0.0  # with passes: how many the budget would have allowed


def choose(cell, vocab_size, train_chars, budget, batch_size, seq_len, time_step, embed=0,
           adaptive=None, directions=1):
    """Pick a Choice (layers, hidden, dropout) and say why. embed: the run's embedding size;
    adaptive: its adaptive softmax (an Adaptive), None for the full one; directions: 2 for the
    bidirectional model.

    time_step(layers, hidden) returns the measured seconds of one training step; it is called
    for the PROBES only.
    """
    started = time.perf_counter()

    def macs(layers, hidden):
        return macs_per_char(cell, vocab_size, layers, hidden, embed, adaptive, directions)

    def count(layers, hidden):
        return parameter_count(cell, vocab_size, layers, hidden, embed, adaptive, directions)

    measured = {size: time_step(*size) for size in PROBES}
    (l1, h1), (l2, h2) = PROBES
    x1, x2 = (macs(*size) for size in PROBES)
    slope = max((measured[PROBES[1]] - measured[PROBES[0]]) / (x2 - x1), 0.0)
    intercept = max(measured[PROBES[0]] - slope * x1, 0.0)
    train_seconds = TRAIN_SHARE * max(budget - (time.perf_counter() - started), 0.0)
    chars_per_step = batch_size * seq_len
    best, fitted = None, False
    for layers, hidden in CANDIDATES:
        step = intercept + slope * macs(layers, hidden)
        chars = train_seconds / max(step, 1e-6) * chars_per_step
        params = count(layers, hidden)
        fits = chars >= CHARS_PER_PARAM * params and params <= MAX_PARAMS_PER_CHAR * train_chars
        if best is None or fits:
            best, fitted = (layers, hidden, chars, params), fits
    if not fitted and best[3] > MAX_PARAMS_PER_CHAR * train_chars:
        layers, hidden = MEMORISING
        step = intercept + slope * macs(layers, hidden)
        best = (layers, hidden, train_seconds / max(step, 1e-6) * chars_per_step,
                count(layers, hidden))
    layers, hidden, chars, params = best
    epochs = chars / max(train_chars, 1)
    dropout = dropout_for(epochs, params / max(train_chars, 1))
    reason = _reason(cell, budget, best, epochs, dropout, fitted, train_chars, embed)
    if epochs <= ENOUGH_PASSES:
        return Choice(layers, hidden, dropout, reason, int(chars))
    seconds = train_seconds * ENOUGH_PASSES / epochs
    reason += (f"; {ENOUGH_PASSES} passes learn this text by heart, so the run stops after them "
               f"(about {seconds:.0f} s of training)")
    return Choice(layers, hidden, dropout, reason, int(ENOUGH_PASSES * train_chars),
                  ENOUGH_PASSES, epochs)


def _reason(cell, budget, best, epochs, dropout, fitted, train_chars, embed):
    """The line the user reads: the choice, and the rules it meets or, if none could, which
    it breaks and what would help."""
    layers, hidden, chars, params = best
    seen = (f"{budget:g} s should let a {layers}x{hidden} {cell.upper()} ({params:,} parameters) "
            f"see about {chars / 1e6:.1f}M characters ({epochs:.1f} passes over the corpus)")
    if fitted:
        return f"{seen}, at least {CHARS_PER_PARAM:g} per parameter; dropout {dropout:g}"
    broken = []
    if chars < CHARS_PER_PARAM * params:
        broken.append(f"{chars / params:.1f} characters per parameter, not the "
                      f"{CHARS_PER_PARAM:g} wanted")
    if params > MAX_PARAMS_PER_CHAR * train_chars:
        broken.append(f"{params / max(train_chars, 1):.0f} parameters per training character, "
                      f"over the {MAX_PARAMS_PER_CHAR:g} allowed")
    helps = "a larger --time-budget or corpus, --patience"
    if not embed:
        helps += ", --embed 64 for a large vocabulary"
    smallest = "the smallest that can use dropout" if (layers, hidden) == MEMORISING else \
        "the smallest"
    return (f"no size fits this budget and corpus, so {smallest}: {seen}; that is "
            f"{' and '.join(broken)}; dropout {dropout:g}; what would help: {helps}, or the "
            "n-gram baseline (--cell ngram)")
