"""Fine-tuning (`charlm train NEW_TEXT --init-from CKPT`): a new run that starts from a trained
model's weights, with a new optimizer state, a schedule over the new run and its own split of
the new text.

The model's architecture comes from the checkpoint; an option that names another one is an
error, never a silent change. The vocabulary only grows: every character the model knows keeps
its id and its weights, and the characters of the new text it does not know get the ids after
the old ones, in code-point order, so nothing is ever remapped. Their rows (one-hot input
columns or embedding rows, the full softmax's head rows) start as a fresh model's do. With an
adaptive softmax, whose ids are ranked by frequency, they join the last cluster's tail: a
character the model has never seen is rare, and the head and the other clusters keep their
shapes and weights.
"""

from dataclasses import fields
from pathlib import Path

import numpy as np

from charlm.data import text
from charlm.errors import CheckpointError, UsageError
from charlm.io import checkpoint
from charlm.names import NGRAM
from charlm.nn import output
from charlm.train.config import TrainConfig

# The settings that define the model's shape: taken from the checkpoint, never changed
ARCHITECTURE = ("cell", "activation", "layers", "hidden", "embed", "softmax", "cutoffs",
                "div_value")
MAX_NAMED = 8          # new characters named in the note


def load_base(path):
    """The checkpoint to start from: a recurrent model (weights only or a training file)."""
    if Path(path).is_dir():
        raise CheckpointError(f"{path} is a directory; give a checkpoint in it, such as "
                              f"{Path(path) / 'best.npz'}")
    loaded = checkpoint.load(path)
    if loaded.kind == NGRAM:
        raise UsageError(f"{path} is an n-gram model; --init-from takes a recurrent model "
                         "(rnn, lstm or gru)")
    return loaded


def settings(loaded, given, limits, path):
    """The new run's TrainConfig: the checkpoint's architecture (and its dropout unless
    given), the user's or the default training settings. A UsageError names every option
    that contradicts the checkpoint."""
    mcfg = checkpoint.model_config_from(loaded.config, loaded.format_version)
    model = {"cell": mcfg.cell, "activation": mcfg.activation, "layers": mcfg.layers,
             "hidden": mcfg.hidden, "embed": mcfg.embed, "softmax": mcfg.softmax,
             "cutoffs": ",".join(str(c) for c in mcfg.cutoffs), "div_value": mcfg.div_value}
    if mcfg.softmax != output.ADAPTIVE:                   # no clusters: no cluster settings
        model = {k: v for k, v in model.items() if k not in ("cutoffs", "div_value")}
    if not mcfg.cell_module.USES_ACTIVATION:
        del model["activation"]
    conflicts = [f"--{k.replace('_', '-')} {given[k]} (the model: {model[k]})"
                 for k in ARCHITECTURE if k in given and k in model
                 and _differs(k, given[k], model[k])]
    if conflicts:
        raise UsageError(f"{path} is a {mcfg.describe()}: {', '.join(conflicts)}; drop these "
                         "options to fine-tune it, or train a new model without --init-from")
    chosen = {"dropout": mcfg.dropout} | given | model | {"init_from": str(path)}
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in chosen.items() if k in known}, **limits)


def _differs(key, asked, held):
    if key == "cutoffs":
        try:
            return tuple(int(c) for c in str(asked).split(",")) != tuple(
                int(c) for c in held.split(","))
        except ValueError:
            return True
    return asked != held


def grown_corpus(loaded, corpus):
    """(corpus in the model's vocabulary, grown by the characters it lacks; a note for the
    user, or None when the model knows every character)."""
    old = loaded.vocab
    vocab = old.extended(corpus.vocab)
    grown = reencoded(corpus, vocab)
    added = vocab.size - old.size
    if not added:
        return grown, None
    named = ", ".join(repr(vocab.char(i)) for i in range(old.size, old.size +
                                                             min(added, MAX_NAMED)))
    more = ", ..." if added > MAX_NAMED else ""
    return grown, (f"{added} character{'s' * (added > 1)} of the new text that {loaded.path} "
                   f"does not know get the new ids {old.size}-{vocab.size - 1} and fresh "
                   f"weights: {named}{more}")


def reencoded(corpus, vocab):
    """corpus with its ids in vocab, which holds every character of corpus.vocab: the new
    text in a model's vocabulary."""
    new_id, unknown = vocab.encode_codepoints(corpus.vocab.codepoints.astype(np.uint32),
                                              unknown="skip")
    assert not unknown, "vocab must hold every character of the corpus"
    return text.Corpus(vocab, new_id[corpus.ids], corpus.fingerprint, corpus.warnings)


def copy_weights(params, base):
    """Writes the base model's weights into params (a fresh model of the grown vocabulary),
    each into the leading block of its array: old ids are a prefix of the new ones, and only
    the vocabulary's axes grow (one-hot input columns, embedding rows, head rows and bias, the
    last adaptive cluster's rows); the rest of each array keeps its fresh initialisation."""
    for name, value in base.items():
        target = params[name]
        if value.ndim != target.ndim or any(o > n for o, n in zip(value.shape, target.shape)):
            raise CheckpointError(f"the model's {name} {value.shape} does not fit {target.shape}")
        target[tuple(slice(0, n) for n in value.shape)] = value
