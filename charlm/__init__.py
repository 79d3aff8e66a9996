"""charlm: character-level RNN, LSTM and GRU language models in numpy.

The package follows the data path, one layer a subpackage (ARCHITECTURE.md): nn (the
numbers), data (text to ids), io (checkpoint files), lm (the language-model interface every
command uses), train (the loop and its run directory), cli (the commands).
"""

__version__ = "0.1.0"
