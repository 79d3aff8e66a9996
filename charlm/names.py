"""The names users choose from, without numpy, so that `charlm --help` lists them at once.

Each list is the only one: the cells' registry (charlm.nn.cells.CELLS), the optimizers'
(charlm.nn.optim.OPTIMIZERS), the schedules (charlm.nn.optim.schedule_factor) and the CLI's
choices all follow it, and tests/test_names.py ties them together.
"""

CELLS = ("rnn", "lstm", "gru")
NGRAM = "ngram"                    # the Kneser-Ney baseline, trained with --cell ngram
MODEL_KINDS = CELLS + (NGRAM,)
MIXTURE = "mixture"                # several models of any kinds mixed (charlm mix, --mix)
ACTIVATIONS = ("tanh", "relu")     # the vanilla RNN's nonlinearity
SOFTMAXES = ("full", "adaptive")     # the output layer: nn.Linear, nn.AdaptiveLogSoftmaxWithLoss
OPTIMIZERS = ("adam", "adamw", "rmsprop", "adagrad", "sgd")
SCHEDULES = ("constant", "cosine", "step")

# `eval perplexity --adapt`'s defaults (--adapt-lr, --adapt-decay, --adapt-seg; charlm.lm.adapt),
# measured on tiny Shakespeare's training split, never on the text scored
ADAPT_DEFAULTS = (3e-4, 0.01, 256)
# a mixture's online weights forget this share of their evidence per character (--forgetting)
MIX_FORGETTING = 0.001
