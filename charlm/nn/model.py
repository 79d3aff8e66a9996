"""The character language model: one-hot input or a learned embedding -> L stacked recurrent
layers -> an output layer (charlm.nn.output: a full softmax or an adaptive one).

Dimensions: T time steps, B batch, V vocabulary, H hidden size, G gates, N = T * B.
Parameters use the names and shapes of PyTorch's state_dict for nn.RNN/LSTM/GRU (attribute
`rnn`) plus nn.Linear (attribute `head`), so a PyTorch user can load them as they are:
    embed.weight (V, E)                only with an embedding (nn.Embedding, attribute `embed`)
    rnn.weight_ih_l{k} (G*H, V, E or H)   rnn.weight_hh_l{k} (G*H, H)
    rnn.bias_ih_l{k} (G*H,)            rnn.bias_hh_l{k} (G*H,)
    head.weight (V, H)                 head.bias (V,)        the full softmax (nn.Linear)
    head.weight, tail.{i}.{0,1}.weight  the adaptive softmax (see charlm.nn.output)
Bidirectional (charlm.nn.bidirectional): each rnn name also with PyTorch's suffix _reverse,
head.weight (V, 2H). All parameters are views into one flat buffer, and so are their
gradients, which makes clipping and the optimizer a few whole-buffer operations.
"""

from dataclasses import asdict, dataclass

import numpy as np

from charlm.nn import output
from charlm.nn.cells import CELLS
from charlm.nn.init import xavier_uniform
from charlm.nn.layout import ONE_HOT_MAX_COLS, feature_rows, gather_columns_grad, shifted_rows
from charlm.nn.projection import embedded, fold_input_weights, project
from charlm.nn.workspace import FRESH


@dataclass(frozen=True)
class ModelConfig:
    cell: str
    vocab_size: int
    hidden: int
    layers: int
    activation: str = "tanh"       # rnn only: tanh or relu
    dropout: float = 0.0           # between layers and before the head, training only
    embed: int = 0                 # E, a learned input embedding's size; 0 = one-hot input
    softmax: str = output.FULL     # the output layer: full or adaptive
    cutoffs: tuple = ()            # the adaptive softmax's cluster bounds over frequency-ranked ids
    div_value: float = 4.0         # the adaptive softmax's shrink of each cluster's inner size
    reset_at: str = ""             # the document separator the state restarts after; "" = none
    bidirectional: bool = False    # a cloze model: a second, reversed stack (nn.bidirectional)

    def to_dict(self):
        return asdict(self)

    @property
    def cell_module(self):
        """The cell's equations (charlm.nn.cells)."""
        return CELLS[self.cell]

    @property
    def directions(self):
        """The recurrent stacks: ("",) or, bidirectional, ("", "_reverse") (PyTorch's suffix)."""
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def head_inputs(self):
        """What the output layer reads per character: H, or [h; g] (2H) bidirectional."""
        return self.hidden * len(self.directions)

    @property
    def input_size(self):
        """What layer 0 reads: E with an embedding, else the one-hot V."""
        return self.embed or self.vocab_size

    def describe(self):
        """How a user names this model: "2x128 GRU, embedding 64, adaptive softmax 200/1000"."""
        embedding = f", embedding {self.embed}" if self.embed else ""
        cuts = "/".join(str(c) for c in self.cutoffs)
        softmax = f", adaptive softmax {cuts}" if self.softmax == output.ADAPTIVE else ""
        documents = f", restarts after {self.reset_at!r}" if self.reset_at else ""
        cell = ("bidirectional " if self.bidirectional else "") + self.cell.upper()
        return f"{self.layers}x{self.hidden} {cell}{embedding}{softmax}{documents}"


def param_shapes(cfg):
    """Name -> shape, matrices first, then biases (the optimizer decays the matrix prefix)."""
    G, H, V = cfg.cell_module.GATES, cfg.hidden, cfg.vocab_size
    matrices = {"embed.weight": (V, cfg.embed)} if cfg.embed else {}
    biases = {}
    for k in range(cfg.layers):
        for d in cfg.directions:
            matrices[f"rnn.weight_ih_l{k}{d}"] = (G * H, cfg.input_size if k == 0 else H)
            matrices[f"rnn.weight_hh_l{k}{d}"] = (G * H, H)
            biases[f"rnn.bias_ih_l{k}{d}"] = (G * H,)
            biases[f"rnn.bias_hh_l{k}{d}"] = (G * H,)
    for name, shape in output.param_shapes(cfg).items():
        (matrices if len(shape) == 2 else biases)[name] = shape
    return matrices | biases


def allocate(shapes, dtype=np.float32):
    """One zeroed flat buffer and a dict of named views into it."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    flat = np.zeros(sum(sizes), dtype)
    views, offset = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        views[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return flat, views


def matrix_size(cfg):
    """Number of leading flat entries that are weight matrices (not biases)."""
    return sum(int(np.prod(s)) for s in param_shapes(cfg).values() if len(s) == 2)


def init_params(cfg, rng, dtype=np.float32):
    """Xavier-uniform input and output weights, zero biases, each layer's recurrent weights as
    its cell initialises them (init_recurrent), a standard-normal embedding. Returns (flat,
    params)."""
    flat, params = allocate(param_shapes(cfg), dtype)
    H = cfg.hidden
    for k in range(cfg.layers):
        for d in cfg.directions:
            xavier_uniform(params[f"rnn.weight_ih_l{k}{d}"], cfg.input_size if k == 0 else H, H,
                           rng)
            cfg.cell_module.init_recurrent(params[f"rnn.weight_hh_l{k}{d}"],
                                           params[f"rnn.bias_ih_l{k}{d}"], rng, cfg.activation)
    output.init(params, cfg, rng)
    if cfg.embed:                                  # N(0, 1), as nn.Embedding starts
        params["embed.weight"][...] = rng.standard_normal((cfg.vocab_size, cfg.embed))
    return flat, params


def initial_state(cfg, batch, dtype=np.float32):
    """Zero state: per layer one (B, H) array for each of the cell's STATE parts."""
    parts = len(cfg.cell_module.STATE)
    return [tuple(np.zeros((batch, cfg.hidden), dtype) for _ in range(parts))
            for _ in range(cfg.layers)]


def transposed(state):
    """Per layer, (B, H) arrays -> contiguous (H, B) arrays (the cells' layout), and back."""
    return [tuple(np.ascontiguousarray(s.T) for s in layer) for layer in state]


def loss_and_grads(params, cfg, x, y, state, grads, dropout_rng=None, dstate=None, ws=FRESH,
                   keep=None, log_probs=None):
    """One chunk of truncated BPTT: x, y (T, B) inputs and targets. Writes the gradient of the
    mean nats into grads; returns (summed nats, final state, gradient of the initial state).
    keep: where the state restarts, as in forward. log_probs: None, or a (T * B,) float64
    array to receive log p of each target (charlm.nn.output.loss)."""
    top, new_state, cache = forward(params, cfg, x, state, dropout_rng, ws, keep)
    nll_sum, out_cache = output.loss(params, cfg, top, y.reshape(-1), ws, log_probs)
    d_top = output.backward(params, cfg, out_cache, grads, x.shape, ws)
    dstate0 = backward(params, cfg, d_top, cache, grads, dstate, ws)
    return nll_sum, new_state, dstate0


def forward(params, cfg, x, state, dropout_rng=None, ws=FRESH, keep=None):
    """x: (T, B) ids, time-major. Returns the top layer's outputs as rows top (H, T*B) (what
    charlm.nn.output reads), the final state and the cache.

    Inside, every per-step array is feature-major, (T, features, B) (see charlm.nn.layout). With
    a dropout_rng and cfg.dropout > 0, each layer's output is dropped (inverted dropout)
    before it feeds the next layer or the head. ws (a charlm.nn.workspace.Workspace) lends the
    large arrays; top and the cache then live in it until the next step's forward. keep: None,
    or (T, 1, B) with 0 where a stream's state restarts before step t (charlm.nn.resets), in
    every layer.
    """
    cell = cfg.cell_module
    T, B = x.shape
    drop = cfg.dropout if dropout_rng is not None else 0.0
    # (T, D, B) input of each layer: the embedded ids, else none (layer 0 reads ids)
    inp = embedded(params, x, ws.scope("input")) if cfg.embed else None
    layer_caches, new_state = [], []
    for k, layer_state in enumerate(transposed(state)):
        layer_ws = ws.scope(k)                             # the layer's cache, kept for backward
        folded = fold_input_weights(cell, params, k, B, ws, by_id=inp is None)
        xs = project(*folded, x, inp, ws)                  # shared by the layers
        w_hh, b_hh = params[f"rnn.weight_hh_l{k}"], params[f"rnn.bias_hh_l{k}"]
        hs, final, cell_cache = cell.forward(xs, layer_state, w_hh, b_hh, cfg.activation,
                                             layer_ws, keep)
        outputs, mask = hs, None                           # the recurrence sees hs undropped
        if drop > 0:
            mask = _dropout_mask(dropout_rng, drop, hs, layer_ws)
            hs = np.multiply(hs, mask, out=layer_ws.empty("dropped", hs.shape, hs.dtype))
        layer_caches.append((inp, layer_state[0], outputs, cell_cache, mask))
        new_state.append(final)
        inp = hs
    return rows_of(inp, ws), transposed(new_state), (x, layer_caches, keep)


def rows_of(inp, ws=FRESH):
    """The top layer's outputs inp (T, H, B) as rows (H, T*B), in time-major order."""
    T, H, B = inp.shape                 # at B = 1, (T, H, 1) is already the rows' transpose
    return inp.reshape(T, H).T if B == 1 else feature_rows(inp, ws.empty("top", (H, T * B),
                                                                          inp.dtype))


def _dropout_mask(rng, drop, hs, ws):
    """Inverted dropout: 0 with probability drop, else 1 / (1 - drop); shaped like hs."""
    draws = rng.random(hs.shape, dtype=np.float32, out=ws.empty("draws", hs.shape, np.float32))
    mask = np.greater_equal(draws, drop, out=ws.empty("mask", hs.shape, hs.dtype))
    mask *= hs.dtype.type(1.0 / (1.0 - drop))
    return mask


def backward(params, cfg, dhs, cache, grads, dstate=None, ws=FRESH):
    """Writes d loss / d param of the recurrent layers into grads (views keyed like params).

    dhs: (T, H, B) the gradient of the top layer's outputs (charlm.nn.output.backward).
    dstate: the gradient flowing into the final state (zero in truncated BPTT, where gradients
    stop at the chunk boundary). Returns the gradient for the initial state, per layer, in the
    state's structure. ws: as in forward (the same one).
    """
    cell = cfg.cell_module
    x, layer_caches, keep = cache
    (T, B), H, V = x.shape, cfg.hidden, cfg.vocab_size
    parts = len(cell.STATE)
    if dstate is None:
        d_finals = [tuple(np.zeros((H, B), dhs.dtype) for _ in range(parts))] * cfg.layers
    else:
        d_finals = transposed(dstate)
    dstate0 = [None] * cfg.layers
    for k in range(cfg.layers - 1, -1, -1):
        inp, h0, outputs, cell_cache, mask = layer_caches[k]
        if mask is not None:
            dhs *= mask
        # every array below is dead once the layer's gradients are out: the layers share them
        d_input, d_hidden, dstate0[k] = cell.backward(dhs, d_finals[k], cell_cache, ws)
        GH, N, dt = d_hidden.shape[1], T * B, dhs.dtype
        d_hidden_rows = feature_rows(d_hidden, ws.empty("d_hidden_rows", (GH, N), dt))
        previous = shifted_rows(h0, outputs, ws.empty("previous", (H, N), dt))
        if keep is not None:                     # the h each step read: zero after a restart
            steps = previous.reshape(H, T, B)    # a view
            steps *= keep[:, 0, :]
        np.matmul(d_hidden_rows, previous.T, out=grads[f"rnn.weight_hh_l{k}"])
        np.sum(d_hidden_rows, axis=1, out=grads[f"rnn.bias_hh_l{k}"])
        if d_input is d_hidden:                  # both biases sit outside every product
            d_input_rows = d_hidden_rows
            grads[f"rnn.bias_ih_l{k}"][...] = grads[f"rnn.bias_hh_l{k}"]
        else:
            d_input_rows = feature_rows(d_input, ws.empty("d_input_rows", (GH, N), dt))
            np.sum(d_input_rows, axis=1, out=grads[f"rnn.bias_ih_l{k}"])
        if inp is None:                          # layer 0 read the ids: W_ih gathered by id
            grads["rnn.weight_ih_l0"][...] = _by_id(x, d_input_rows, V, ws)
            continue
        w_ih = params[f"rnn.weight_ih_l{k}"]
        D = w_ih.shape[1]
        rows, d = ("inp_rows", "dhs") if k else ("embedded_rows", "d_embedded")  # (., H) or E
        inp_rows = feature_rows(inp, ws.empty(rows, (D, N), dt))
        np.matmul(d_input_rows, inp_rows.T, out=grads[f"rnn.weight_ih_l{k}"])
        dhs = np.matmul(w_ih.T, d_input, out=ws.empty(d, (T, D, B), dt))      # (T, D, B)
        if k == 0:                               # the embedding's rows, summed by id
            d_rows = feature_rows(dhs, ws.empty("d_embedded_rows", (D, N), dt))
            grads["embed.weight"][...] = _by_id(x, d_rows, V, ws).T
    return transposed(dstate0)


def _by_id(x, d_cols, V, ws):
    """(K, V): the columns of d_cols (K, N) summed by the ids x (T, B) (layout's scatter-add)."""
    N = d_cols.shape[1]
    one_hot = ws.empty("one_hot", (N, V), d_cols.dtype) if V <= ONE_HOT_MAX_COLS else None
    return gather_columns_grad(x.reshape(-1), d_cols, V, one_hot)
