"""The model run forward without training: whole chunks for scoring text, one character at a
time for sampling. Both fold every weight once (the cells' pre-scale, the biases outside
products) and keep the fast paths measured for one stream.

Dimensions: T time steps, B streams, V vocabulary, H hidden size, G gates.

The score of a text (the same for `charlm eval perplexity` and the validation loss of
training): the text starts from the zero state; its first character is context for the
second, so N characters give N - 1 predictions; the state is carried through the whole text,
except that a model trained with a document separator restarts it where each one ends
(charlm.nn.resets). With S streams the predictions are cut into S contiguous pieces scored side
by side, each from the zero state; a piece starts one character early so that no prediction
is lost.
"""

import math

import numpy as np

from charlm.nn import output, resets
from charlm.nn.layout import one_stream_order
from charlm.nn.model import initial_state, rows_of, transposed
from charlm.nn.projection import embedded, fold_input_weights, input_columns, project
from charlm.nn.workspace import FRESH, Workspace


def fold_for_inference(params, cfg, batch):
    """Per layer, the weights infer uses, folded once for a whole text instead of per chunk:
    (input weights, input bias, folded W_hh, b_hh). batch: the streams infer will be given."""
    cell = cfg.cell_module
    return [(*fold_input_weights(cell, params, k, batch, by_id=_by_id(cfg, batch)),
             _recurrent_for_inference(cell, params[f"rnn.weight_hh_l{k}"], batch),
             params[f"rnn.bias_hh_l{k}"]) for k in range(cfg.layers)]


def _by_id(cfg, batch):
    """Whether layer 0 reads its folded input from one (V, G*H) table by id: always, except
    an embedding at one stream, which multiplies the embedded rows as training does. There
    the forward of dynamic evaluation, remade per segment, would need the whole table per
    segment; this way it gives infer's numbers bit for bit at the cost of one small GEMM."""
    return not (cfg.embed and batch == 1)


def _recurrent_for_inference(cell, w_hh, batch):
    """The folded W_hh, in the memory order of the one-stream GEMV at one stream
    (charlm.nn.layout.one_stream_order)."""
    w = cell.fold_recurrent(w_hh)
    return one_stream_order(w) if batch == 1 else w


def infer(params, cfg, x, state, ws=FRESH, folded=None, keep=None):
    """forward for scoring: no dropout, no cache. Returns the top layer's rows (H, T*B) (what
    charlm.nn.output reads) and the state.

    folded: fold_for_inference(params, cfg, B), to reuse over the chunks of a text (else made
    here). With a workspace (ws), the rows live in it until the next call; every array here
    dies within its layer's turn, so the layers share them. keep: where the state restarts, as
    in charlm.nn.model.forward.
    """
    cell = cfg.cell_module
    T, B = x.shape
    if folded is None:
        folded = fold_for_inference(params, cfg, B)
    inp = None if _by_id(cfg, B) else embedded(params, x, ws)
    new_state = []
    for layer_state, (w_in, b_in, w_hh, b_hh) in zip(transposed(state), folded):
        xs = project(w_in, b_in, x, inp, ws)
        inp, final = cell.infer(xs, layer_state, w_hh, b_hh, cfg.activation, ws, keep)
        new_state.append(final)
    return rows_of(inp, ws), transposed(new_state)


def score_ids(params, cfg, ids, streams=1, chunk_len=256, reset_ids=()):
    """Summed nats (float64) and the number of predictions for ids (N,). reset_ids: the
    separator (ids) after which the state restarts; none by default."""
    total, n_pred = 0.0, max(len(ids) - 1, 0)
    for _, log_probs in _chunk_log_probs(params, cfg, ids, streams, chunk_len, reset_ids):
        total -= float(log_probs.sum())
    return total, n_pred


def position_log_probs(params, cfg, ids, streams=1, chunk_len=256, reset_ids=()):
    """(N - 1,) float64 log p of each prediction of ids (N,), in text order: the terms whose
    negated sum score_ids returns (a mixture weighs its models by them, one position at a
    time). Memory: the N - 1 figures and one chunk, never an (N, V) array."""
    out = np.zeros(max(len(ids) - 1, 0), np.float64)
    for where, log_probs in _chunk_log_probs(params, cfg, ids, streams, chunk_len, reset_ids):
        out[where] = log_probs
    return out


def _chunk_log_probs(params, cfg, ids, streams, chunk_len, reset_ids=()):
    """Per chunk: (the predictions' positions in the text, their log-probabilities), over the
    S streams of the module docstring."""
    n_pred = len(ids) - 1
    if n_pred <= 0:
        return
    streams = max(1, min(streams, n_pred))
    piece = math.ceil(n_pred / streams)                     # predictions per stream
    starts = np.arange(streams) * piece                     # (S,) first context position
    state = initial_state(cfg, streams, params["rnn.weight_hh_l0"].dtype)
    # Chunks reuse their large arrays (2-15% faster at 16 streams); at one stream they
    # are small, and fresh ones measured faster.
    ws = Workspace() if streams > 1 else FRESH
    folded = fold_for_inference(params, cfg, streams)     # once, not per chunk
    restart = resets.restarts(ids, reset_ids)               # (N,) bool
    for t0 in range(0, piece, chunk_len):
        pos = starts[None, :] + np.arange(t0, min(t0 + chunk_len, piece))[:, None]  # (T, S)
        valid = (pos < n_pred).reshape(-1)
        pos = np.minimum(pos, n_pred - 1)
        x, y = ids[pos], ids[pos + 1]                       # (T, S) each
        keep = resets.keep_mask(restart[pos], state[0][0].dtype)
        top, state = infer(params, cfg, x, state, ws, folded, keep)
        log_probs = output.target_log_probs(params, cfg, top, y.reshape(-1), ws)
        yield pos.reshape(-1)[valid], log_probs[valid]


def score_texts(params, cfg, texts, chunk_len=32, max_logits=1 << 23):
    """(S,) float64 summed nats of each of the equal-length texts (S, N), each scored as
    score_ids scores one text at one stream: many candidate texts as parallel streams, in
    groups small enough that a chunk's logits stay under max_logits entries (the adaptive
    softmax forms only its head's for every row)."""
    S, N = texts.shape
    width = cfg.vocab_size if cfg.softmax == output.FULL else cfg.cutoffs[0] + len(cfg.cutoffs)
    group = max(1, max_logits // (chunk_len * width))
    totals = np.zeros(S, np.float64)
    for g0 in range(0, S, group):
        ids = np.ascontiguousarray(texts[g0:g0 + group].T)              # (N, B) time-major
        B = ids.shape[1]
        state = initial_state(cfg, B, params["rnn.weight_hh_l0"].dtype)
        folded = fold_for_inference(params, cfg, B)
        for t0 in range(0, N - 1, chunk_len):
            x, y = ids[t0:min(t0 + chunk_len, N - 1)], ids[t0 + 1:t0 + 1 + chunk_len]
            top, state = infer(params, cfg, x, state, folded=folded)
            log_probs = output.target_log_probs(params, cfg, top, y.reshape(-1))
            totals[g0:g0 + B] -= log_probs.reshape(-1, B).sum(axis=0)
    return totals


class Stepper:
    """Runs the model one character at a time; the state lives in preallocated vectors.

    The matrix products are taken here, the gate equations by the cell's step(). Above layer
    0, a cell whose input and recurrent products may be summed (not SEPARATE_RECURRENT) takes
    W_ih x + W_hh h as one product of the stacked (2H, G*H) weights with [h below, h], two
    neighbours in self.hidden: one call instead of two products and an add.
    """

    def __init__(self, params, cfg, reset_ids=()):
        self.cfg, self.cell = cfg, cfg.cell_module
        cell = self.cell
        G, H = cell.GATES, cfg.hidden
        dtype = params["rnn.weight_hh_l0"].dtype
        scale = cell.gate_scale(H, dtype)                      # (G*H,) the cells' folding
        self.stacked = not cell.SEPARATE_RECURRENT
        # xs[k]: layer 0's table (V, G*H) of folded input columns, else the folded biases;
        # w_step[k]: the product taken every step, W_hh^T (H, G*H) or [W_ih^T; W_hh^T]
        self.xs, self.w_ih, self.w_step, self.constants = [], [], [], []
        for k in range(cfg.layers):
            w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"]
            b_ih, b_hh = params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"]
            self.constants.append(cell.step_constants(b_hh, cfg.activation, dtype))
            w_hh_t = w_hh.T * scale                                            # (H, G*H)
            if k == 0:
                self.xs.append(cell.fold_input(input_columns(params) + b_ih, b_hh))  # (V, G*H)
                self.w_step.append(np.ascontiguousarray(w_hh_t))
                continue
            self.xs.append(cell.fold_input(b_ih.copy(), b_hh))
            if self.stacked:
                self.w_step.append(np.concatenate([w_ih.T * scale, w_hh_t]))  # (2H, G*H)
            else:
                self.w_ih.append(np.ascontiguousarray(w_ih.T * scale))        # (H, G*H)
                self.w_step.append(np.ascontiguousarray(w_hh_t))
        self.params = params
        if cfg.softmax == output.FULL:           # the fast path: one GEMV into a reused buffer
            self.head_w = np.ascontiguousarray(params["head.weight"].T)        # (H, V)
            self.head_b = params["head.bias"].copy()
        self.hidden = np.zeros(cfg.layers * H, dtype)          # every layer's h, in order
        # per layer, the cell's state vectors: h a view into self.hidden, the rest on their own
        self.state = [(self.hidden[k * H:(k + 1) * H],) +
                      tuple(np.zeros(H, dtype) for _ in cell.STATE[1:])
                      for k in range(cfg.layers)]
        self.a = np.empty(G * H, dtype)
        self.logits = np.empty(cfg.vocab_size, dtype)
        self.watcher = resets.Watcher(reset_ids) if len(reset_ids) else None

    def reset(self):
        """Back to the zero state, before any character."""
        self._zero_state()
        if self.watcher is not None:
            self.watcher.clear()

    def _zero_state(self):
        for layer in self.state:
            for part in layer:
                part[:] = 0

    def snapshot(self):
        """A copy of every layer's state vectors (h lives in self.hidden)."""
        return self.hidden.copy(), [[part.copy() for part in layer[1:]] for layer in self.state]

    def restore(self, snapshot):
        hidden, rest = snapshot
        self.hidden[:] = hidden
        for layer, parts in zip(self.state, rest):
            for part, saved in zip(layer[1:], parts):
                part[:] = saved

    def step(self, char_id):
        """Feed one id; returns the logits (V,) for the next character (a reused buffer with
        the full softmax; log-probabilities, whose softmax is the same, with the adaptive one)."""
        H, a, step = self.cfg.hidden, self.a, self.cell.step
        if self.watcher is not None and self.watcher.restarts_before(char_id):
            self._zero_state()                                # a document starts
        for k, state in enumerate(self.state):
            if k == 0:
                np.matmul(state[0], self.w_step[0], out=a)
                xs = self.xs[0][char_id]
            elif self.stacked:
                np.matmul(self.hidden[(k - 1) * H:(k + 1) * H], self.w_step[k], out=a)
                xs = self.xs[k]                               # the folded biases
            else:
                np.matmul(state[0], self.w_step[k], out=a)
                xs = self.state[k - 1][0] @ self.w_ih[k - 1]
                xs += self.xs[k]
            step(a, xs, state, self.constants[k])
        if self.cfg.softmax != output.FULL:
            return output.log_probs(self.params, self.cfg, self.state[-1][0][:, None])[0]
        np.matmul(self.state[-1][0], self.head_w, out=self.logits)
        self.logits += self.head_b
        return self.logits
