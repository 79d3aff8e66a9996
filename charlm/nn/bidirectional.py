"""The bidirectional cloze model: p(x_t | x_<t, x_>t) = softmax(W [h_{t-1}; g_{t+1}] + b).

A forward stack (the names of charlm.nn.model) reads the text left to right, h_t after x_<=t;
a second stack, the same cells with the names suffixed _reverse, reads it right to left, g_t
after x_>=t. The output layer (charlm.nn.output, full or adaptive) reads [h_{t-1}; g_{t+1}]
(2H), so neither side has seen x_t. Each stack's layers read only the layer below in their
own direction: were they mixed as in nn.GRU(bidirectional=True) with several layers, the
second layer would see x_t. Both directions share the input layer (one-hot or embed.weight).

Training (loss_and_grads) is truncated BPTT over a chunk x (T, B) with targets y = the next
characters: the forward state is carried from chunk to chunk as in the left-to-right model;
the reversed stack reads the chunk's targets from their right end and starts from the zero
state there in every chunk, so the chunk's last target has no right context and the others
at most the rest of the chunk. Scoring (cloze_rows) runs the reversed stack over the whole
text, right to left, and the forward stack over it left to right.

Each direction is the model of charlm.nn.model run as it is (forward/backward, dropout, the
cells' chunk code): the reversed one on the reversed chunk, its parameters seen under the
forward names (direction_params).
"""

import numpy as np

from charlm.nn import inference, model, output
from charlm.nn.workspace import FRESH

REVERSE = "_reverse"
KEEP_BYTES = 1 << 26    # the reversed stack's outputs kept for a text up to this size (64 MiB)


def direction_params(params, suffix):
    """The rnn parameters of one direction under the forward names, and the shared input."""
    picked = {}
    for name, value in params.items():
        if name.startswith("rnn."):
            base = name.removesuffix(REVERSE)
            if (base != name) == (suffix == REVERSE):
                picked[base] = value
        elif name.startswith("embed."):
            picked[name] = value
    return picked


def loss_and_grads(params, cfg, x, y, state, grads, dropout_rng=None, dstate=None, ws=FRESH,
                   keep=None):
    """model.loss_and_grads for the bidirectional model: x, y (T, B). Writes the gradient of
    the mean nats into grads; returns (summed nats, forward stack's final state, gradient of
    its initial state). The reversed stack carries nothing from chunk to chunk. keep: None
    (a document separator, --reset-at, is not for this model)."""
    assert keep is None, "the bidirectional model has no document restarts"
    T, B = x.shape
    H, dt = cfg.hidden, params["rnn.weight_hh_l0"].dtype
    fwd, rev = direction_params(params, ""), direction_params(params, REVERSE)
    top_f, new_state, cache_f = model.forward(fwd, cfg, x, state, dropout_rng, ws.scope("f"))
    reversed_y = np.ascontiguousarray(y[::-1])
    top_r, _, cache_r = model.forward(rev, cfg, reversed_y, model.initial_state(cfg, B, dt),
                                      dropout_rng, ws.scope("r"))
    top = ws.empty("top", (2 * H, T * B), dt)
    top[:H] = top_f
    _right_context(top_r.reshape(H, T, B), top[H:].reshape(H, T, B))
    nll_sum, out_cache = output.loss(params, cfg, top, y.reshape(-1), ws)
    d_top = output.backward(params, cfg, out_cache, grads, (T, B), ws)       # (T, 2H, B)
    d_f = np.ascontiguousarray(d_top[:, :H])
    d_r = ws.empty("d_reversed", (T, H, B), dt)
    d_r[T - 1] = 0                       # the output that read y_0 predicts nothing
    d_r[:T - 1] = d_top[:T - 1, H:][::-1]
    dstate0 = model.backward(fwd, cfg, d_f, cache_f, direction_params(grads, ""), dstate,
                             ws.scope("f"))
    rev_grads = direction_params(grads, REVERSE)
    if cfg.embed:                        # both directions read embed.weight: sum their parts
        rev_grads["embed.weight"] = ws.empty("d_embed_r", grads["embed.weight"].shape, dt)
    model.backward(rev, cfg, d_r, cache_r, rev_grads, None, ws.scope("r"))
    if cfg.embed:
        grads["embed.weight"] += rev_grads["embed.weight"]
    return nll_sum, new_state, dstate0


def _right_context(reversed_rows, out):
    """out (H, T, B)[:, i] = what the reversed stack read right of target i: its output after
    y_{T-1} .. y_{i+1}, which is reversed_rows[:, T-2-i]; zero for the last target."""
    T = out.shape[1]
    out[:, T - 1] = 0
    out[:, :T - 1] = reversed_rows[:, :T - 1][:, ::-1]


def cloze_rows(params, cfg, texts, chunk_len=256):
    """Yields (start, rows) over texts (B, N) (equal-length texts as streams): rows (2H,
    n * B) are [h_{t-1}; g_{t+1}] for positions t = start .. start + n - 1, time-major, what
    charlm.nn.output reads to predict x_t. h_{-1} and g_N are the zero state.

    The reversed stack runs right to left first, keeping its state at each chunk's right end
    and, while they fit in KEEP_BYTES, its outputs; then the forward stack runs chunk by chunk
    from the left, the reversed one rerun from the kept state where its outputs were not kept:
    two passes for a short text, three (memory per chunk, not per text) for a long one.
    """
    B, N = texts.shape
    H, dt = cfg.hidden, params["rnn.weight_hh_l0"].dtype
    fwd, rev = direction_params(params, ""), direction_params(params, REVERSE)
    fold_f, fold_r = (inference.fold_for_inference(p, cfg, B) for p in (fwd, rev))
    starts = list(range(0, N, chunk_len))
    ids = np.ascontiguousarray(texts.T)                               # (N, B) time-major
    state, entering, kept = model.initial_state(cfg, B, dt), {}, {}
    keep = N * B * H * np.dtype(dt).itemsize <= KEEP_BYTES
    for a in reversed(starts):                  # the reversed stack's state right of a chunk
        entering[a] = state
        top_r, state = inference.infer(rev, cfg, ids[a:a + chunk_len][::-1], state,
                                       folded=fold_r)
        if keep:                                # a fresh array each call (no workspace)
            kept[a] = top_r
    state = model.initial_state(cfg, B, dt)
    for a in starts:
        chunk = ids[a:a + chunk_len]
        n = len(chunk)
        rows = np.empty((2 * H, n, B), dt)
        rows[:H, 0] = state[-1][0].T                                   # h_{a-1}
        top, state = inference.infer(fwd, cfg, chunk, state, folded=fold_f)
        rows[:H, 1:] = top.reshape(H, n, B)[:, :n - 1]
        rows[H:, n - 1] = entering[a][-1][0].T                         # g_{a+n}
        top_r = kept.pop(a) if keep else inference.infer(rev, cfg, chunk[::-1], entering[a],
                                                         folded=fold_r)[0]
        rows[H:, :n - 1] = top_r.reshape(H, n, B)[:, :n - 1][:, ::-1]
        yield a, rows.reshape(2 * H, n * B)


def cloze_log_probs(params, cfg, texts, chunk_len=256):
    """Yields (start, log_probs (n, B, V) float64): log p(x_t | the rest of its text) for
    every candidate x_t, positions t = start .. start + n - 1 of texts (B, N)."""
    B = texts.shape[0]
    for start, rows in cloze_rows(params, cfg, texts, chunk_len):
        scores = output.log_probs(params, cfg, rows).astype(np.float64)
        scores -= scores.max(axis=1, keepdims=True)
        scores -= np.log(np.exp(scores).sum(axis=1, keepdims=True))
        yield start, scores.reshape(-1, B, scores.shape[1])


def score_ids(params, cfg, ids, streams=1, chunk_len=256):
    """The cloze score of a text (validation): summed nats (float64) of every character but
    the first from all the others, and the N - 1 predictions, as inference.score_ids counts.

    With S streams the text is cut into S contiguous pieces of L = ceil(N / S) characters
    scored side by side, each as a text of its own (the last one ends at the text's end and
    counts only what the others left), as inference.score_ids does: faster, and slightly
    pessimistic at the pieces' edges."""
    ids = np.asarray(ids)
    N = len(ids)
    if N < 2:
        return 0.0, 0
    streams = max(1, min(streams, N // 2))
    L = -(-N // streams)
    starts = np.minimum(np.arange(streams) * L, N - L)          # (S,) where each piece starts
    counts_from = np.arange(streams) * L                        # first position each counts
    counts_from[0] = 1                                          # the text's first is context
    texts = ids[starts[:, None] + np.arange(L)]                 # (S, L)
    total = 0.0
    for start, rows in cloze_rows(params, cfg, texts, chunk_len):
        n = rows.shape[1] // streams
        targets = texts[:, start:start + n].T                   # (n, S) time-major
        log_probs = output.target_log_probs(params, cfg, rows, targets.reshape(-1))
        where = starts[None, :] + start + np.arange(n)[:, None]
        total -= float(log_probs.reshape(n, streams)[where >= counts_from].sum())
    return total, N - 1
