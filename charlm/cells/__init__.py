"""Recurrent cells. Each module offers the same contract, written as forward/backward pairs.

Dimensions: T time steps, B batch, H hidden size, G gates (RNN 1, LSTM 4, GRU 3).
Arrays are feature-major, (T, features, B) (see charlm.layers); states are (H, B).

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

forward, infer and backward take an optional last argument ws, a charlm.workspace.Workspace
that lends their large arrays (default: fresh ones).

`d_input` is the gradient with respect to the input projection W_ih x + b_ih and `d_hidden` the
one with respect to W_hh h + b_hh (the same array except in the GRU, whose reset gate scales the
latter), so the caller turns them into every weight gradient and the gradient for the layer
below. Weight layouts and gate orders are
PyTorch's: w_hh is (G*H, H), LSTM gates i, f, g, o, GRU gates r, z, n.
"""

from charlm.cells import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
