"""Recurrent cells. Each module offers the same contract, written as forward/backward pairs.

Dimensions: T time steps, B batch, H hidden size, G gates (RNN 1, LSTM 4, GRU 3).
Arrays are feature-major, (T, features, B) (see charlm.nn.layout); states are (H, B).

    GATES                                        G
    STATE                                        the state's parts: ("h",) or ("h", "c")
    USES_ACTIVATION                              whether `activation` (tanh/relu) means anything
    SEPARATE_RECURRENT                           True where W_hh h + b_hh enters a product of
                                                 its own (the GRU's reset gate), so it cannot be
                                                 summed with W_ih x before the nonlinearity
    init_recurrent(w_hh, b_ih, rng, activation)  the cell's own initialisation, in place
    gate_scale(H, dtype) -> (G*H,)               the pre-scale fold_input applies to each gate row
    fold_input(xp, b_hh) -> xs                  turns the input projection W_ih x + b_ih (..., G*H)
                                                 into what forward wants, in place (b_hh folded in
                                                 where it sits outside a product, sigmoid gates
                                                 pre-scaled by 1/2)
    fold_recurrent(w_hh, out=None) -> w         W_hh with the same pre-scale (RNN: W_hh itself)
    forward(xs, state, w_hh, b_hh, activation) -> hs, state, cache      xs (T, G*H, B)
    infer(xs, state, fold_recurrent(w_hh), b_hh, activation) -> hs, state
                                                 forward without a cache; the folded W_hh is made
                                                 once per text, not per chunk
    backward(dhs, dstate, cache) -> d_input, d_hidden, dstate0
    step_constants(b_hh, activation, dtype)      what step needs besides its arrays, made once
    step(a, xs, state, constants)                one time step on plain vectors, for sampling:
                                                 a (G*H,) holds the folded recurrent product
                                                 (and, unless SEPARATE_RECURRENT, the folded
                                                 input product of the layer below too) and is
                                                 scratch; xs (G*H,) the rest of the folded input;
                                                 state's vectors (H,) are updated in place

forward, infer and backward take an optional argument ws, a charlm.nn.workspace.Workspace
that lends their large arrays (default: fresh ones). forward and infer take an optional last
argument keep, None or (T, 1, B) with 0 where a stream's state restarts before step t
(charlm.nn.resets, `--reset-at`): the cell multiplies the carried state by it where the state
passes from one step to the next (resets.carried), forward keeps it in the cache, and backward
multiplies the state's gradient by it on the way back. The equations themselves never see it.

At one stream (B = 1) each cell hands infer, forward and backward to its module <cell>_stream,
which works on plain (H,) vectors (per-call overhead, not arithmetic, is most of the time
there): forward makes infer's calls on the same kernels (the folded W_hh in
charlm.nn.layout.one_stream_order), so the two give the same numbers bit for bit.

`d_input` is the gradient with respect to the input projection W_ih x + b_ih and `d_hidden` the
one with respect to W_hh h + b_hh (the same array except in the GRU, whose reset gate scales the
latter), so the caller turns them into every weight gradient and the gradient for the layer
below. Weight layouts and gate orders are
PyTorch's: w_hh is (G*H, H), LSTM gates i, f, g, o, GRU gates r, z, n.
"""

from charlm import names
from charlm.nn.cells import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
assert tuple(CELLS) == names.CELLS       # the one list of cell names is charlm.names

