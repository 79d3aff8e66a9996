"""What a charlm checkpoint holds, and turning one back into a model or a training run.

Key layout (format version 1), every array one zip member:
    params/<name>            float32, PyTorch state_dict names and shapes (see model.py)
    optim/<moment>/<name>    float32 optimizer moments keyed like params (adam: exp_avg,
                             exp_avg_sq; rmsprop: square_avg; adagrad: sum_sq; sgd: none)
    state/l<k>.h, .c         float32 (B, H) hidden state carried into the next training step
    meta/vocab               int32 (V,) Unicode code points, index = id
    meta/config              JSON (uint8 bytes): model, train, progress and data sections
    meta/format_version      int64 scalar
An n-gram checkpoint holds ngram/* arrays instead of params/optim/state (see ngram.py).
"""

import numpy as np

from charlm import __version__, model
from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.errors import CheckpointError
from charlm.vocab import Vocab

FORMAT_VERSION = 1
KIND = "charlm-checkpoint"
MAX_VOCAB = 0x110000
MAX_HIDDEN = 65536
MAX_LAYERS = 64
MOMENTS = {"adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
           "rmsprop": ("square_avg",), "adagrad": ("sum_sq",), "sgd": ()}


def _field(section, key, kind, lo=None, hi=None, choices=None):
    """A config field with its type and range checked; raises CheckpointError naming it."""
    if not isinstance(section, dict) or key not in section:
        raise CheckpointError(f"config is missing {key!r}")
    value = section[key]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if ok and choices is not None:
        ok = value in choices
    if ok and lo is not None:
        ok = lo <= value <= hi
    if not ok:
        raise CheckpointError(f"config field {key!r} has an invalid value {str(value)[:40]!r}")
    return value


_COUNT = (int, 0, 1 << 62)
_SECONDS = ((int, float), 0.0, 1e12)
_LOSS = ((int, float), -1e30, 1e30)
# progress fields a resume reads: (kind, lo, hi); the second group may also be None
_PROGRESS = {"step": _COUNT, "epoch": _COUNT, "window": _COUNT, "skipped": _COUNT,
             "consecutive_skips": _COUNT, "evals_since_best": _COUNT, "optimizer_step": _COUNT,
             "elapsed": _SECONDS}
_PROGRESS_OR_NONE = {"best_val": _LOSS, "last_val": _LOSS, "initial_loss": _LOSS,
                     "smoothed_loss": _LOSS, "budget_spent": _SECONDS}


def check_progress(config):
    """Validates each field of a training checkpoint's progress section that a resume reads
    (counts, seconds, losses, the random generator's state); raises CheckpointError."""
    progress = config.get("progress")
    if not isinstance(progress, dict):
        raise CheckpointError("config is missing 'progress'")
    for key, (kind, lo, hi) in (_PROGRESS | _PROGRESS_OR_NONE).items():
        if key in progress and not (key in _PROGRESS_OR_NONE and progress[key] is None):
            _field(progress, key, kind, lo, hi)
    if "rng" in progress:
        try:
            np.random.PCG64().state = progress["rng"]
        except (TypeError, ValueError, KeyError, OverflowError):
            raise CheckpointError("config field 'rng' has an invalid value") from None


def model_config_from(config):
    """ModelConfig from a checkpoint's config, every field validated."""
    m = config.get("model") if isinstance(config, dict) else None
    return model.ModelConfig(
        cell=_field(m, "cell", str, choices=model.CELL_NAMES),
        vocab_size=_field(m, "vocab_size", int, 2, MAX_VOCAB),
        hidden=_field(m, "hidden", int, 1, MAX_HIDDEN),
        layers=_field(m, "layers", int, 1, MAX_LAYERS),
        activation=_field(m, "activation", str, choices=("tanh", "relu")),
        dropout=float(_field(m, "dropout", (int, float), 0.0, 0.99)),
    )


def schema(config, version):
    """Exact dtype and shape of every member for this config (checkpoint.load_checkpoint)."""
    if not isinstance(config, dict) or config.get("kind") != KIND:
        raise CheckpointError("not a charlm checkpoint (no charlm marker in its config)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"written by a newer charlm (format {version}, this charlm reads "
                              f"up to {FORMAT_VERSION}); upgrade charlm to load it")
    if version < 1:
        raise CheckpointError(f"unknown checkpoint format version {version}")
    cell = config.get("model", {}).get("cell") if isinstance(config.get("model"), dict) else None
    if cell == "ngram":
        from charlm import ngram_bundle
        return ngram_bundle.schema(config)
    cfg = model_config_from(config)
    check_progress(config)
    train = config.get("train")
    optimizer = _field(train, "optimizer", str, choices=tuple(MOMENTS))
    batch = _field(train, "batch_size", int, 1, 1 << 20)
    shapes = {f"params/{name}": ("<f4", shape) for name, shape in model.param_shapes(cfg).items()}
    for moment in MOMENTS[optimizer]:
        shapes |= {f"optim/{moment}/{name}": ("<f4", shape)
                   for name, shape in model.param_shapes(cfg).items()}
    for k in range(cfg.layers):
        for part in ("h", "c") if cfg.cell == "lstm" else ("h",):
            shapes[f"state/l{k}.{part}"] = ("<f4", (batch, cfg.hidden))
    shapes["meta/vocab"] = ("<i4", (cfg.vocab_size,))
    return shapes


def save(path, config, params, vocab, moments, state):
    """Write a full training checkpoint; config holds model, train, progress and data."""
    arrays = {f"params/{name}": value for name, value in params.items()}
    for moment, views in moments.items():
        arrays |= {f"optim/{moment}/{name}": value for name, value in views.items()}
    for k, layer_state in enumerate(state):
        for part, value in zip(("h", "c"), layer_state):
            arrays[f"state/l{k}.{part}"] = value
    arrays["meta/vocab"] = vocab.to_array()
    config = {"kind": KIND, "charlm_version": __version__} | config
    save_checkpoint(path, arrays, config, FORMAT_VERSION)


def load(path):
    """Load and validate a checkpoint; returns the checkpoint.Checkpoint with its Vocab."""
    ckpt = load_checkpoint(path, schema)
    try:
        vocab = Vocab.from_array(ckpt.arrays["meta/vocab"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid vocabulary ({exc})") from None
    return ckpt, vocab


def split_arrays(ckpt, cfg):
    """(params, moments, state) dicts from a loaded neural checkpoint."""
    arrays = ckpt.arrays
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    moments = {}
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, moment, name = key.split("/", 2)
            moments.setdefault(moment, {})[name] = value
    parts = ("h", "c") if cfg.cell == "lstm" else ("h",)
    state = [tuple(arrays[f"state/l{k}.{p}"] for p in parts) for k in range(cfg.layers)]
    return params, moments, state
