"""What a charlm checkpoint holds, for each model kind, and the only code that saves or loads one.

Key layout, every array one zip member (charlm.io.npz):
    params/<name>            float32, PyTorch state_dict names and shapes (see charlm.nn.model);
                             embed.weight (V, E) only with an embedding (format version 2);
                             head.weight (S + C, H) and tail.{i}.{0,1}.weight instead of
                             head.weight (V, H) and head.bias with an adaptive softmax (format
                             version 3, whose ids are ranked by frequency)
    optim/<moment>/<name>    float32 optimizer moments keyed like params (adam: exp_avg,
                             exp_avg_sq; rmsprop: square_avg; adagrad: sum_sq; sgd: none)
    state/l<k>.<part>        float32 (B, H) hidden state carried into the next training step,
                             one per part of the cell's state (h, and c for the LSTM)
  (optim/ and state/ only in a training checkpoint, last.npz; best.npz holds the weights,
  the vocabulary and the config, marked "weights_only": true, format version 2)
    adapt/rms                float32 (P,) the root mean square of training gradients, all
                             parameters flat in params order (charlm.nn.dynamic), only in a
                             file whose config has "adapt_rms" (format version 4): the
                             recurrent model inside a run's mix.npz
    meta/vocab               int32 (V,) Unicode code points, index = id
    meta/config              JSON (uint8 bytes): kind, charlm_version, and the model, train,
                             progress (charlm.io.progress) and data sections
    meta/format_version      int64 scalar: 3 for a model with an adaptive softmax, 2 for one
                             with a learned embedding or a weights-only file, else 1, so that
                             a charlm that predates a part refuses the file by its version
An n-gram checkpoint holds ngram/* arrays instead of params/optim/state (charlm.nn.kneser_ney)
and its model section is {"cell": "ngram", "vocab_size", "order", "sizes"}. A mixture
checkpoint (format version 4) holds whole checkpoints of other kinds under mix/<i>/
(charlm.io.mixture).
"""

import math
from dataclasses import dataclass, replace
from pathlib import Path

from charlm import __version__, names
from charlm.data.vocab import Vocab
from charlm.errors import CheckpointError
from charlm.io import mixture
from charlm.io.npz import load_checkpoint, save_checkpoint
from charlm.io.progress import Progress, check_field
from charlm.nn import adaptive, kneser_ney, model, output
from charlm.nn.cells import CELLS
from charlm.nn.optim import OPTIMIZERS

FORMAT_VERSION = 4              # the newest this charlm reads and writes
EMBEDDING_VERSION = 2           # the first format with a learned input embedding
WEIGHTS_ONLY_VERSION = 2        # the first format with weights-only files
ADAPTIVE_VERSION = 3            # the first format with an adaptive softmax
MIXTURE_VERSION = mixture.MIXTURE_VERSION   # the first format with mixtures
ADAPT_VERSION = 4               # the first format with dynamic evaluation's gradient RMS
KIND = "charlm-checkpoint"
MAX_VOCAB = 0x110000
MAX_HIDDEN = 65536
MAX_LAYERS = 64
MAX_ORDER = 12
MAX_EMBED = 65536
MAX_DIV_VALUE = 64.0


@dataclass
class Loaded:
    """A validated charlm checkpoint: its path, config, arrays, vocabulary and format."""

    path: Path
    config: dict
    arrays: dict
    vocab: Vocab
    format_version: int

    @property
    def kind(self):
        return kind_of(self.config)


def kind_of(config):
    """"ngram", "mixture" or "neural": which model a checkpoint's config describes (the one
    place)."""
    m = config.get("model") if isinstance(config, dict) else None
    cell = m.get("cell") if isinstance(m, dict) else None
    return cell if cell in (names.NGRAM, names.MIXTURE) else "neural"


def model_config_from(config, version=FORMAT_VERSION):
    """ModelConfig from a neural checkpoint's config, every field validated; a file of a
    format before the embedding or the adaptive softmax has none."""
    m = config.get("model") if isinstance(config, dict) else None
    embed = 0
    if isinstance(m, dict) and "embed" in m:
        embed = check_field(m, "embed", int, 0, MAX_EMBED)
        _needs(version, EMBEDDING_VERSION, "embed", embed)
    cfg = model.ModelConfig(
        cell=check_field(m, "cell", str, choices=names.CELLS),
        vocab_size=check_field(m, "vocab_size", int, 2, MAX_VOCAB),
        hidden=check_field(m, "hidden", int, 1, MAX_HIDDEN),
        layers=check_field(m, "layers", int, 1, MAX_LAYERS),
        activation=check_field(m, "activation", str, choices=names.ACTIVATIONS),
        dropout=float(check_field(m, "dropout", (int, float), 0.0, 0.99)),
        embed=embed,
    )
    if m.get("softmax", output.FULL) == output.FULL:
        return cfg
    check_field(m, "softmax", str, choices=names.SOFTMAXES)
    _needs(version, ADAPTIVE_VERSION, "softmax", True)
    div_value = float(check_field(m, "div_value", (int, float), 1.0, MAX_DIV_VALUE))
    cutoffs = m.get("cutoffs")
    try:
        if not isinstance(cutoffs, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in cutoffs):
            raise ValueError("cutoffs must be a list of integers")
        cutoffs = adaptive.check_cutoffs(cutoffs, cfg.vocab_size, cfg.hidden, div_value)
    except ValueError as exc:
        raise CheckpointError(f"config field 'cutoffs' is invalid ({exc})") from None
    return replace(cfg, softmax=output.ADAPTIVE, cutoffs=cutoffs, div_value=div_value)


def _needs(version, first, field, present):
    if present and version < first:
        raise CheckpointError(f"config field '{field}' needs format {first}, not {version}")


def format_version(model_section, weights_only=False, adapt_rms=False):
    """The oldest format that holds a model with this model section (and weights only, and
    the gradient RMS of dynamic evaluation)."""
    if adapt_rms:
        return ADAPT_VERSION
    if model_section.get("softmax", output.FULL) != output.FULL:
        return ADAPTIVE_VERSION
    if weights_only:
        return WEIGHTS_ONLY_VERSION
    return EMBEDDING_VERSION if model_section.get("embed") else 1


def schema(config, version):
    """Exact dtype and shape of every member for this config (charlm.io.npz.load_checkpoint)."""
    if not isinstance(config, dict) or config.get("kind") != KIND:
        raise CheckpointError("not a charlm checkpoint (no charlm marker in its config)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"written by a newer charlm (format {version}, this charlm reads "
                              f"up to {FORMAT_VERSION}); upgrade charlm to load it")
    if version < 1:
        raise CheckpointError(f"unknown checkpoint format version {version}")
    if kind_of(config) == names.NGRAM:
        return _ngram_schema(config)
    if kind_of(config) == names.MIXTURE:
        return mixture.schema(config, version, schema, MAX_VOCAB)
    return _neural_schema(config, version)


def _neural_schema(config, version):
    cfg = model_config_from(config, version)
    Progress.from_dict(config.get("progress"))
    train = config.get("train")
    optimizer = check_field(train, "optimizer", str, choices=names.OPTIMIZERS)
    batch = check_field(train, "batch_size", int, 1, 1 << 20)
    shapes = model.param_shapes(cfg)
    members = {f"params/{name}": ("<f4", shape) for name, shape in shapes.items()}
    members["meta/vocab"] = ("<i4", (cfg.vocab_size,))
    if "adapt_rms" in config:
        check_field(config, "adapt_rms", dict)
        _needs(version, ADAPT_VERSION, "adapt_rms", True)
        members["adapt/rms"] = ("<f4", (sum(math.prod(s) for s in shapes.values()),))
    if is_weights_only(config, version):
        return members
    for moment in OPTIMIZERS[optimizer].moment_names:
        members |= {f"optim/{moment}/{name}": ("<f4", shape) for name, shape in shapes.items()}
    for k in range(cfg.layers):
        for part in cfg.cell_module.STATE:
            members[f"state/l{k}.{part}"] = ("<f4", (batch, cfg.hidden))
    return members


def is_weights_only(config, version=FORMAT_VERSION):
    """Whether a neural checkpoint holds the weights alone (no optimizer moments, no state)."""
    flag = config.get("weights_only", False)
    if not isinstance(flag, bool) or (flag and version < WEIGHTS_ONLY_VERSION):
        raise CheckpointError("config field 'weights_only' has an invalid value")
    return flag


def _ngram_schema(config):
    m = config["model"]
    vocab_size = check_field(m, "vocab_size", int, 2, MAX_VOCAB)
    order = check_field(m, "order", int, 1, MAX_ORDER)
    sizes = m.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != order or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 1 << 40 for s in sizes):
        raise CheckpointError("config field 'sizes' is invalid")
    return kneser_ney.schema(vocab_size, order, sizes) | {"meta/vocab": ("<i4", (vocab_size,))}


def _save(path, arrays, vocab, sections, version=1):
    """Every kind's file: its arrays, the vocabulary and the config header. version: the
    oldest format that holds every part, so older charlm versions read what they can."""
    arrays = arrays | {"meta/vocab": vocab.to_array()}
    config = {"kind": KIND, "charlm_version": __version__} | sections
    save_checkpoint(path, arrays, config, version)


def save_weights(path, sections, params, vocab):
    """The model alone (best.npz): what sample, eval, info and PyTorch read; a third of a
    training checkpoint's size with Adam."""
    arrays = {f"params/{name}": value for name, value in params.items()}
    _save(path, arrays, vocab, sections | {"weights_only": True},
          format_version(sections["model"], weights_only=True))


def save_neural(path, sections, params, vocab, moments, state):
    """A full training checkpoint; sections: model, train, progress and data."""
    arrays = {f"params/{name}": value for name, value in params.items()}
    for moment, views in moments.items():
        arrays |= {f"optim/{moment}/{name}": value for name, value in views.items()}
    parts = CELLS[sections["model"]["cell"]].STATE
    for k, layer_state in enumerate(state):
        for part, value in zip(parts, layer_state, strict=True):
            arrays[f"state/l{k}.{part}"] = value
    _save(path, arrays, vocab, sections, format_version(sections["model"]))


def save_ngram(path, sections, ngram_model, vocab):
    """A fitted Kneser-Ney model; sections: model (order, sizes), train, progress and data."""
    _save(path, ngram_model.to_arrays(), vocab, sections)


def save_mixture(path, models, weights, forgetting):
    """A self-contained mixture of the Loaded checkpoints models (not mixtures), the first
    one's vocabulary its ids; a recurrent model goes in as its weights alone (and its
    gradient RMS, adapt/rms, if its config has "adapt_rms")."""
    arrays, entries = {}, []
    for i, loaded in enumerate(models):
        config, members, version = loaded.config, loaded.arrays, loaded.format_version
        if loaded.kind == "neural":
            members = {k: v for k, v in members.items() if not k.startswith(("optim/", "state/"))}
            config = config | {"weights_only": True}
            version = format_version(config["model"], True, "adapt_rms" in config)
        entries.append({"config": config, "format_version": version})
        arrays |= {mixture.prefix(i) + key: value for key, value in members.items()}
    first = models[0].config
    sections = {"model": {"cell": names.MIXTURE, "vocab_size": models[0].vocab.size,
                          "components": entries, "weights": weights, "forgetting": forgetting},
                "train": first.get("train"), "data": first.get("data")}
    _save(path, arrays, models[0].vocab, sections, MIXTURE_VERSION)


def mixture_parts(loaded):
    """The Loaded checkpoint of each model in a loaded mixture, and (weights, forgetting)."""
    parts = []
    m = loaded.config["model"]
    for i, entry in enumerate(m["components"]):
        p = mixture.prefix(i)
        arrays = {k[len(p):]: v for k, v in loaded.arrays.items() if k.startswith(p)}
        try:
            vocab = Vocab.from_array(arrays["meta/vocab"])
        except ValueError as exc:
            raise CheckpointError(f"{loaded.path}: model {i} has an invalid vocabulary "
                                  f"({exc})") from None
        parts.append(Loaded(loaded.path, entry["config"], arrays, vocab,
                            entry["format_version"]))
    if parts[0].vocab != loaded.vocab:
        raise CheckpointError(f"{loaded.path}: the mixture's vocabulary is not its first "
                              "model's")
    return parts, mixture.check_settings(m, len(parts))


def load(path):
    """Load and validate a checkpoint of any kind; a Loaded, or one CheckpointError."""
    ckpt = load_checkpoint(path, schema)
    try:
        vocab = Vocab.from_array(ckpt.arrays["meta/vocab"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid vocabulary ({exc})") from None
    return Loaded(ckpt.path, ckpt.config, ckpt.arrays, vocab, ckpt.format_version)


def neural_arrays(loaded, cfg):
    """(params, moments, state) dicts from a loaded neural checkpoint."""
    arrays = loaded.arrays
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    moments = {}
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, moment, name = key.split("/", 2)
            moments.setdefault(moment, {})[name] = value
    if is_weights_only(loaded.config, loaded.format_version):
        return params, moments, None                 # best.npz: no carried state
    state = [tuple(arrays[f"state/l{k}.{p}"] for p in cfg.cell_module.STATE)
             for k in range(cfg.layers)]
    return params, moments, state


def ngram_model(loaded):
    """The NGramModel of a loaded n-gram checkpoint."""
    m = loaded.config["model"]
    arrays = {k: v for k, v in loaded.arrays.items() if k.startswith("ngram/")}
    try:
        return kneser_ney.NGramModel.from_arrays(arrays, m["vocab_size"], m["order"])
    except ValueError as exc:
        raise CheckpointError(f"{loaded.path}: invalid n-gram tables ({exc})") from None
