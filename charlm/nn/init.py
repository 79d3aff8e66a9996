"""Weight initialisation: Xavier-uniform matrices and orthogonal recurrent gate blocks."""

import numpy as np


def xavier_uniform(w, fan_in, fan_out, rng):
    """w drawn uniformly from +-sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010), in place.

    A gated layer's fan_out is H, one gate's width, not G*H: each gate is its own layer.
    """
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    w[...] = rng.uniform(-bound, bound, w.shape)


def orthogonal_blocks(w_hh, rng):
    """Each (H, H) gate block of w_hh (G*H, H) a uniformly random orthogonal matrix, in place:
    the recurrence then neither shrinks nor grows a state at the start of training."""
    H = w_hh.shape[1]
    for g in range(w_hh.shape[0] // H):
        q, r = np.linalg.qr(rng.standard_normal((H, H)))
        q *= np.sign(np.diag(r))                 # the sign fix makes the draw uniform
        w_hh[g * H:(g + 1) * H] = q
