"""charlm: character-level RNN, LSTM and GRU language models in numpy."""

__version__ = "0.1.0"
