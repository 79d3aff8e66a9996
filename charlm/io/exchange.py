"""A recurrent charlm model as a safetensors file (charlm.io.safetensors) and back.

The tensors are the checkpoint's params/ arrays under their PyTorch names (embed.weight,
rnn.weight_ih_l0, ..., head.weight, tail.0.0.weight, ...), float32. The metadata holds
    format          "pt", as PyTorch tools expect
    charlm.vocab    the vocabulary: the character of id i at index i, as one string
    charlm.config   the checkpoint's config as JSON, marked "weights_only": true
A file without the charlm keys (one a PyTorch user saved from the same modules) gets its
vocabulary from a text file of the characters in id order, and its model section from the
tensors' shapes (cell from the gate count, sizes, layers, the adaptive softmax's cutoffs) plus
the two settings no shape holds: the RNN's nonlinearity and the adaptive softmax's div_value.
Either way the result goes through the checkpoint schema (charlm.io.checkpoint) before a file
is written: names, dtypes and shapes tied to the config, a valid vocabulary of the right size.
"""

import json
import re

import numpy as np

from charlm import __version__, names
from charlm.data.vocab import Vocab
from charlm.errors import CheckpointError, UsageError, one_line
from charlm.io import checkpoint, safetensors
from charlm.io.npz_members import MAX_CONFIG_BYTES, array_to_json, listing
from charlm.nn.cells import CELLS

CONFIG_KEY, VOCAB_KEY = "charlm.config", "charlm.vocab"
PARAMS = "params/"


def export(source, out):
    """Write the recurrent model of checkpoint source (best.npz or last.npz) to out."""
    loaded = checkpoint.load(source)
    if loaded.kind == names.NGRAM:
        raise UsageError(f"{source} is an n-gram model: its count tables have no PyTorch "
                         "form, so only recurrent models can be exported")
    tensors = {k[len(PARAMS):]: v for k, v in sorted(loaded.arrays.items())
               if k.startswith(PARAMS)}
    config = loaded.config | {"weights_only": True}
    metadata = {"format": "pt", VOCAB_KEY: loaded.vocab.decode(range(loaded.vocab.size)),
                CONFIG_KEY: json.dumps(config, sort_keys=True, allow_nan=False)}
    safetensors.write(out, tensors, metadata)
    return loaded


def import_file(source, out, vocab_text=None, activation=None, div_value=None):
    """Write the model in safetensors file source to checkpoint out (a weights-only file).

    vocab_text, activation, div_value: for a file without charlm's metadata only."""
    st = safetensors.read(source)
    if CONFIG_KEY in st.metadata or VOCAB_KEY in st.metadata:
        given = [n for n, v in (("--vocab", vocab_text), ("--activation", activation),
                                ("--div-value", div_value)) if v is not None]
        if given:
            raise UsageError(f"{source} carries charlm's vocabulary and config; "
                             f"leave out {', '.join(given)}")
        config, vocab = _from_metadata(st)
    else:
        if vocab_text is None:
            raise UsageError(f"{source} has no charlm metadata; give --vocab FILE, a text "
                             "file holding the model's characters in id order")
        vocab = _vocab_of(vocab_text, str(source), "--vocab")
        config = _foreign_config(st.tensors, vocab.size, activation, div_value)
    params = _checked_params(st, config, vocab)
    sections = {k: v for k, v in config.items()
                if k not in ("kind", "charlm_version", "weights_only")}
    checkpoint.save_weights(out, sections, params, vocab)
    return checkpoint.load(out)


def _from_metadata(st):
    """(config, vocab) from the metadata charlm's export wrote."""
    if CONFIG_KEY not in st.metadata or VOCAB_KEY not in st.metadata:
        raise CheckpointError(f"{st.path}: has one of {CONFIG_KEY} and {VOCAB_KEY} but not "
                              "both; export the checkpoint again")
    raw = np.frombuffer(st.metadata[CONFIG_KEY].encode("utf-8"), np.uint8)
    try:
        config = array_to_json(raw, MAX_CONFIG_BYTES)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{st.path}: {CONFIG_KEY} is not valid JSON "
                              f"({one_line(str(exc))[:120]})") from None
    if not isinstance(config, dict) or config.get("kind") != checkpoint.KIND:
        raise CheckpointError(f"{st.path}: {CONFIG_KEY} is not a charlm config")
    if checkpoint.kind_of(config) == names.NGRAM:
        raise CheckpointError(f"{st.path}: {CONFIG_KEY} describes an n-gram model")
    return config, _vocab_of(st.metadata[VOCAB_KEY], str(st.path), VOCAB_KEY)


def _vocab_of(text, where, what):
    try:
        return Vocab(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4"))
    except ValueError as exc:
        raise CheckpointError(f"{where}: invalid vocabulary in {what} ({exc})") from None


def _foreign_config(tensors, vocab_size, activation, div_value):
    """A weights-only config whose model section the tensors' shapes imply."""
    if "rnn.weight_hh_l0" not in tensors or tensors["rnn.weight_hh_l0"].ndim != 2:
        raise CheckpointError("no 2-D tensor rnn.weight_hh_l0: not the weights of a PyTorch "
                              "nn.RNN, nn.LSTM or nn.GRU saved under the attribute name rnn")
    rows, hidden = tensors["rnn.weight_hh_l0"].shape
    by_gates = {c.GATES: name for name, c in CELLS.items()}
    if hidden == 0 or rows % hidden or rows // hidden not in by_gates:
        raise CheckpointError(f"rnn.weight_hh_l0 has shape {(rows, hidden)}: not G x H rows "
                              f"by H with G gates in {sorted(by_gates)}")
    layers = sum(1 for k in tensors if re.fullmatch(r"rnn\.weight_hh_l\d+", k))
    embedding = tensors.get("embed.weight")
    cell = by_gates[rows // hidden]
    if activation is not None and not CELLS[cell].USES_ACTIVATION:
        raise UsageError(f"--activation applies to the plain RNN, and these are the weights "
                         f"of a {cell.upper()}; leave it out")
    model = {"cell": cell, "vocab_size": vocab_size, "hidden": hidden, "layers": layers,
             "activation": activation or "tanh", "dropout": 0.0,
             "embed": embedding.shape[-1] if embedding is not None and embedding.ndim else 0,
             "softmax": "full"}
    clusters = sorted(k for k in tensors if re.fullmatch(r"tail\.\d+\.1\.weight", k))
    if div_value is not None and not clusters:
        raise UsageError("--div-value applies to an adaptive softmax (tail.* tensors), and "
                         "these weights have a full one; leave it out")
    if clusters and "head.weight" in tensors:
        bounds = [tensors["head.weight"].shape[0] - len(clusters)]
        for i in range(len(clusters) - 1):
            bounds.append(bounds[-1] + tensors.get(f"tail.{i}.1.weight", np.empty(0)).shape[0])
        model |= {"softmax": "adaptive", "cutoffs": bounds,
                  "div_value": float(div_value or 4.0)}
    return {"kind": checkpoint.KIND, "charlm_version": __version__, "model": model,
            "progress": {}, "weights_only": True}


def _checked_params(st, config, vocab):
    """The params dict once names, dtypes and shapes match what the schema says config needs."""
    model = config.get("model")
    version = checkpoint.format_version(model if isinstance(model, dict) else {}, True)
    try:
        expected = checkpoint.schema(config, version)
    except CheckpointError as exc:
        raise CheckpointError(f"{st.path}: {exc}") from None
    want = {k[len(PARAMS):]: v for k, v in expected.items() if k.startswith(PARAMS)}
    missing, extra = sorted(set(want) - set(st.tensors)), sorted(set(st.tensors) - set(want))
    if missing or extra:
        parts = ([f"missing tensors: {listing(missing)}"] if missing else []) + \
                ([f"unexpected tensors: {listing(extra)}"] if extra else [])
        raise CheckpointError(f"{st.path}: {'; '.join(parts)} (for a "
                              f"{_described(config, version)})")
    for name, (dtype, shape) in want.items():
        arr = st.tensors[name]
        if arr.dtype.str != dtype or arr.shape != tuple(shape):
            hint = " (give the --div-value it was built with)" if name.startswith("tail.") \
                else ""
            raise CheckpointError(f"{st.path}: tensor {name} is {arr.dtype.str} {arr.shape}, "
                                  f"the config needs {dtype} {tuple(shape)} for a "
                                  f"{_described(config, version)} over a vocabulary of "
                                  f"{vocab.size} characters{hint}")
    if vocab.size != expected["meta/vocab"][1][0]:
        raise CheckpointError(f"{st.path}: the vocabulary has {vocab.size} characters, the "
                              f"model {expected['meta/vocab'][1][0]}")
    return {name: st.tensors[name] for name in want}


def _described(config, version):
    return checkpoint.model_config_from(config, version).describe()
