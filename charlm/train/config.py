"""A training run's settings, with their defaults. No numpy, so that `charlm train --help`
can show these defaults at once: the CLI reads them from here, never retyping them."""

from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    cell: str = "gru"               # the best validation loss per CPU-minute (README)
    activation: str = "tanh"
    layers: int = 2
    hidden: int = 128
    dropout: float = 0.0
    embed: int = 0                  # a learned input embedding of this size; 0 = one-hot input
    softmax: str = "full"           # full or adaptive (both chosen for a large vocabulary)
    cutoffs: str = ""               # the adaptive softmax's bounds, "500,2000"; "" = by frequency
    div_value: float = 4.0          # the adaptive softmax's shrink of each cluster's inner size
    bidirectional: bool = False     # the cloze model (charlm.nn.bidirectional)
    seq_len: int = 64
    batch_size: int = 32
    lr: float = 4e-3                # with warm-up and cosine decay; 2e-3 trains slower
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    warmup: float = 0.02            # fraction of the run spent ramping the rate up
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    clip_value: float = 0.0         # 0 = off
    steps: int = 0                  # 0 = no step limit
    epochs: float = 0.0
    time_budget: float = 0.0        # seconds; 0 = none
    eval_every: int = 0             # steps; 0 = ten evaluations over the run
    eval_seconds: float = 0.0       # seconds between evaluations; 0 = a fifth of a time budget
    eval_streams: int = 16          # see charlm.nn.inference; within ~0.001 nats of 1 stream
    eval_chars: int = 0             # 0 = the whole validation split
    val_frac: float = 0.1
    seed: int = 1337
    patience: int = 0               # evaluations without improvement before stopping; 0 = off
    state_reset: float = 0.01       # chance per stream and step that its carried state restarts
    reset_at: str = ""              # restart the state after each occurrence; "" = never
    init_from: str = ""             # the trained model a fine-tuning run started from
    max_rollbacks: int = 3          # returns to the last good state before a divergence is final
    sample_every: int = 1           # a short sample at every Nth validation; 0 = none
    explode_factor: float = 3.0     # diverged once the smoothed loss passes this x the first loss


# From this many distinct characters up, a run whose user chose neither gets an input
# embedding of DEFAULT_EMBED and the adaptive softmax (charlm.train.largevocab; measured)
ADAPTIVE_FROM = 1000
DEFAULT_EMBED = 64      # zh-tang-song, 2x128 GRU, 30 s: 64 4.973 nats, 128 5.058

DEFAULTS = TrainConfig()
FIELDS = tuple(f.name for f in fields(TrainConfig))

# Settings that define the model and its training: a resumed run takes them from its
# checkpoint, and giving a different value is an error.
RESUMED = ("cell", "activation", "layers", "hidden", "dropout", "embed", "softmax", "cutoffs",
           "div_value", "bidirectional", "seq_len", "batch_size",
           "lr", "optimizer", "lr_schedule", "warmup", "weight_decay", "clip_norm", "clip_value",
           "val_frac", "seed", "state_reset", "reset_at")
# Settings that say how long and how to watch: a resume may change them.
LIMITS = ("steps", "epochs", "time_budget", "eval_every", "eval_seconds", "eval_streams",
          "eval_chars", "patience", "max_rollbacks", "sample_every")
# Giving any of these means the user chose the model's size: charlm does not auto-size.
SIZE_OPTIONS = ("layers", "hidden", "batch_size", "seq_len", "dropout")
# What a 0 (or "") means for these settings (a limit not set, a feature off, the default).
ZERO_MEANS = {"steps": "off", "epochs": "off", "time_budget": "off", "patience": "off",
              "clip_value": "off", "weight_decay": "off", "state_reset": "off",
              "sample_every": "off", "eval_every": "default", "eval_seconds": "default",
              "eval_chars": "all", "reset_at": "off", "init_from": "none"}
