"""The single-step sampling path computes the same logits as the whole-chunk model."""

import numpy as np
import pytest

from charlm.nn import inference, model, output
from charlm.nn.inference import Stepper
from charlm.nn.model import ModelConfig


@pytest.mark.parametrize("cell,activation",
                         [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
@pytest.mark.parametrize("embed", [0, 4])
@pytest.mark.parametrize("softmax", [{}, {"softmax": "adaptive", "cutoffs": (3, 6),
                                          "div_value": 2.0}])
def test_stepper_logits_equal_the_model_on_the_same_text(cell, activation, embed, softmax):
    rng = np.random.default_rng(0)
    cfg = ModelConfig(cell=cell, vocab_size=9, hidden=6, layers=2, activation=activation,
                      embed=embed, **softmax)
    flat, params = model.init_params(cfg, rng, dtype=np.float64)
    flat += rng.standard_normal(flat.shape) * 0.3              # non-zero biases too
    ids = rng.integers(0, cfg.vocab_size, 12)
    state = model.initial_state(cfg, 1, np.float64)
    top, _ = inference.infer(params, cfg, ids[:, None], state)
    expected = output.log_probs(params, cfg, top)
    stepper = Stepper(params, cfg)
    got = np.stack([stepper.step(int(i)).copy() for i in ids])
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "ngram"])
def test_a_reset_stepper_starts_again_from_the_zero_state(kind):
    """Every model kind's stepper (through charlm.lm.load) forgets what it read on reset()."""
    from pathlib import Path

    from charlm import lm
    path = Path(__file__).parent / "data" / "format1" / f"{kind}.npz"
    model_ = lm.load(path)
    ids = [int(i) for i in model_.vocab.encode("The lazy dog.\n")[0]]   # ".\nT" was seen
    stepper = model_.stepper()
    first = [stepper.step(i).copy() for i in ids]
    stepper.reset()
    again = [stepper.step(i).copy() for i in ids]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert np.array_equal(model_.stepper().step(ids[0]), first[0])
