"""An adaptive softmax over a frequency-ordered vocabulary: torch.nn.AdaptiveLogSoftmaxWithLoss's
parameters, semantics and numbers, as a forward/backward pair (Grave et al., 2017).

Dimensions: N rows, H features, V vocabulary, C clusters, S = cutoffs[0] the shortlist.
The ids are ranked by frequency, so the S most frequent are scored by the head alone; the rest
fall into C clusters [cutoffs[i], cutoffs[i + 1]) with V as the last bound. The head scores the
shortlist and one entry per cluster; cluster i scores its own ids through a two-matrix tail
whose inner size shrinks by div_value per cluster:

    head.weight        (S + C, H)
    tail.{i}.0.weight  (H // div_value ** (i + 1), H)
    tail.{i}.1.weight  (cutoffs[i + 1] - cutoffs[i], H // div_value ** (i + 1))

    log p(w) = log softmax(head x)[w]                                        w < S
    log p(w) = log softmax(head x)[S + i] + log softmax(tail_i x)[w - cutoffs[i]]   w in cluster i

(PyTorch's head_bias=False: no biases anywhere.) A loss needs the head for every row but a
cluster only for the rows whose target lies in it, so training never forms (N, V): rare ids
cost only the rows that reach them. `log_prob` gives the whole (N, V) distribution, for
sampling and for scoring every id.
"""

import numpy as np


def check_cutoffs(cutoffs, vocab_size, hidden=None, div_value=4.0):
    """cutoffs as a tuple of ints, or ValueError saying what is wrong (PyTorch's rules, and,
    given the hidden size, an inner size of at least 1 for every cluster)."""
    cutoffs = tuple(int(c) for c in cutoffs)
    if (not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 0
            or cutoffs[-1] > vocab_size - 1):
        raise ValueError(f"cutoffs must be increasing, unique and between 1 and V - 1 = "
                         f"{vocab_size - 1}, not {list(cutoffs)}")
    if hidden is not None and int(hidden // div_value ** len(cutoffs)) < 1:
        raise ValueError(f"the last of {len(cutoffs)} clusters gets no inner size at hidden "
                         f"size {hidden} and div_value {div_value:g}; use fewer cutoffs")
    return cutoffs


def param_shapes(vocab_size, hidden, cutoffs, div_value=4.0):
    """Name -> shape, as AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value) names them."""
    bounds = (*cutoffs, vocab_size)
    shapes = {"head.weight": (cutoffs[0] + len(cutoffs), hidden)}
    for i in range(len(cutoffs)):
        inner = int(hidden // (div_value ** (i + 1)))
        shapes[f"tail.{i}.0.weight"] = (inner, hidden)
        shapes[f"tail.{i}.1.weight"] = (bounds[i + 1] - bounds[i], inner)
    return shapes


def _log_softmax(z):
    """Row-wise log softmax of z (M, K), in place."""
    z -= z.max(axis=1, keepdims=True)                      # exp() cannot overflow
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def _softmax_at(z, picked):
    """Row-wise softmax of z (M, K) in place, and log softmax(z)[m, picked[m]] (M,) float64:
    one exp per entry, where a log softmax followed by an exp in backward would take two."""
    z -= z.max(axis=1, keepdims=True)                      # exp() cannot overflow
    at = z[np.arange(len(z)), picked].astype(np.float64)
    np.exp(z, out=z)
    total = z.sum(axis=1, dtype=np.float64)                # (M,)
    z /= total.astype(z.dtype)[:, None]
    return at - np.log(total)


def loss_forward(params, x, targets, cutoffs, log_probs=None):
    """Summed nats (float64) of targets (N,) given rows x (N, H), and the cache for backward.

    Computes the head for every row and cluster i only for the rows whose target is in it.
    log_probs: None, or an (N,) float64 array to receive target_log_probs' numbers.
    """
    per_row, cache = _target_log_probs(params, x, targets, cutoffs)
    if log_probs is not None:
        log_probs[...] = per_row
    return -float(per_row.sum()), cache


def target_log_probs(params, x, targets, cutoffs):
    """(N,) float64 log p(target) of each row, computing only the clusters the targets need."""
    return _target_log_probs(params, x, targets, cutoffs)[0]


def _target_log_probs(params, x, targets, cutoffs):
    """(N,) log p(target) and the cache: the softmax of the head and of each cluster reached."""
    S = cutoffs[0]
    x = np.ascontiguousarray(x)                  # rows are gathered below: a strided x is slow
    column = targets.astype(np.int64)                               # the head entry each row needs
    per_row = np.zeros(len(targets), np.float64)
    clusters = []
    for i, (low, high) in enumerate(zip(cutoffs, (*cutoffs[1:], None))):
        rows = np.flatnonzero(targets >= low if high is None else
                              (targets >= low) & (targets < high))
        if len(rows) == 0:
            continue
        column[rows] = S + i
        x_rows = x[rows]
        inner = x_rows @ params[f"tail.{i}.0.weight"].T              # (R, inner)
        probs = inner @ params[f"tail.{i}.1.weight"].T               # (R, cluster size)
        relative = targets[rows].astype(np.int64) - low
        per_row[rows] = _softmax_at(probs, relative)
        clusters.append((i, rows, relative, x_rows, inner, probs))
    head = x @ params["head.weight"].T                               # (N, S + C)
    per_row += _softmax_at(head, column)
    return per_row, (x, column, head, clusters)


def loss_backward(params, cache, grads, scale=1.0):
    """Writes d(scale * summed nats)/d param into grads (keyed like params); returns dx (N, H).

    scale 1 / N gives the gradient of the mean, as training uses. The cache's softmax arrays
    become the gradients (it is used once).
    """
    x, column, d_head, clusters = cache
    N = len(x)
    d_head[np.arange(N), column] -= 1                                # softmax - one-hot
    d_head *= d_head.dtype.type(scale)
    np.matmul(d_head.T, x, out=grads["head.weight"])
    dx = d_head @ params["head.weight"]                              # (N, H)
    for name in params:
        if name.startswith("tail."):
            grads[name][...] = 0                                     # clusters no row reached
    for i, rows, relative, x_rows, inner, d_logits in clusters:
        w0, w1 = params[f"tail.{i}.0.weight"], params[f"tail.{i}.1.weight"]
        d_logits[np.arange(len(rows)), relative] -= 1                # (R, cluster size)
        d_logits *= d_logits.dtype.type(scale)
        np.matmul(d_logits.T, inner, out=grads[f"tail.{i}.1.weight"])
        d_inner = d_logits @ w1                                      # (R, inner)
        np.matmul(d_inner.T, x_rows, out=grads[f"tail.{i}.0.weight"])
        dx[rows] += d_inner @ w0                                     # rows are distinct
    return dx


def log_prob(params, x, cutoffs, vocab_size):
    """The whole distribution: log p (N, V) for rows x (N, H), as AdaptiveLogSoftmaxWithLoss
    .log_prob gives it."""
    S = cutoffs[0]
    head_logp = _log_softmax(x @ params["head.weight"].T)           # (N, S + C)
    out = np.empty((len(x), vocab_size), head_logp.dtype)
    out[:, :S] = head_logp[:, :S]
    bounds = (*cutoffs, vocab_size)
    for i in range(len(cutoffs)):
        inner = x @ params[f"tail.{i}.0.weight"].T
        logp = _log_softmax(inner @ params[f"tail.{i}.1.weight"].T)
        out[:, bounds[i]:bounds[i + 1]] = logp + head_logp[:, S + i:S + i + 1]
    return out


def frequency_cutoffs(counts, shares=(0.8, 0.95, 0.99)):
    """Cutoffs for ids ranked by frequency (counts (V,) in id order, most frequent first):
    the shortlist covers the first share of the text, each cluster the next one; at least one
    id per part, and no cluster for a vocabulary too small to need one."""
    counts = np.asarray(counts, np.float64)
    covered = np.cumsum(counts) / max(counts.sum(), 1.0)
    cuts = []
    for share in shares:
        cut = int(np.searchsorted(covered, share) + 1)
        if (not cuts or cut > cuts[-1]) and cut < len(counts) - 1:
            cuts.append(cut)
    return tuple(cuts) or (max(1, len(counts) // 2),)
