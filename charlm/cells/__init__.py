"""Recurrent cells. Each module offers the same contract, written as forward/backward pairs.

Dimensions: T time steps, B batch, H hidden size, G gates (RNN 1, LSTM 4, GRU 3).
Arrays are time-major, (T, B, ...), so that the slice for one step is contiguous.

    fold_input(xp, b_hh) -> xs                  turns the input projection W_ih x + b_ih (T, B, G*H)
                                                 into what forward wants, in place (b_hh folded in
                                                 where it sits outside a product, sigmoid gates
                                                 pre-scaled by 1/2)
    forward(xs, state, w_hh, b_hh) -> hs, state, cache
    backward(dhs, dstate, cache) -> dxp, dw_hh, db_hh, dstate0

`dxp` is the gradient with respect to the input projection W_ih x + b_ih, so the caller turns it
into dW_ih, db_ih and the gradient for the layer below. Weight layouts and gate orders are
PyTorch's: w_hh is (G*H, H), LSTM gates i, f, g, o, GRU gates r, z, n.
"""

from charlm.cells import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
