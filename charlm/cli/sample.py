"""`charlm sample`: text from any model, each character fed back in as the next input."""

import signal
import sys
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app, discard_stdout
from charlm.names import ADAPT_DEFAULTS


@app.command()
def sample(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    prime: str = typer.Option("", help="Text to start from (printed first)."),
    length: int = typer.Option(500, min=0, help="Characters to generate (the prime not counted)."),
    temperature: float = typer.Option(1.0, callback=o.non_negative, help="Softmax temperature; 0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample from the k most likely characters; 0 = all."),
    top_p: float = typer.Option(1.0, "--top-p", callback=o.top_p, help="Nucleus sampling mass."),
    seed: int | None = typer.Option(None, min=0, help="Random seed for a repeatable sample."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Prime characters outside the vocabulary: error or skip."),
    mix: list[Path] | None = typer.Option(None, help="Mix CHECKPOINT with this model (repeatable); weights adapt online."),
    mix_weights: str | None = typer.Option(None, "--mix-weights", callback=o.mix_weights, help="Fixed weights w1,w2,... for CHECKPOINT and each --mix model."),
    adapt_on: Path | None = typer.Option(None, "--adapt-on", help="Adapt the model to this text first (dynamic evaluation), then sample in its style."),
    adapt_lr: float = typer.Option(ADAPT_DEFAULTS[0], "--adapt-lr", callback=o.non_negative, help="With --adapt-on: the step size."),
    adapt_decay: float = typer.Option(ADAPT_DEFAULTS[1], "--adapt-decay", callback=o.non_negative, help="With --adapt-on: the pull back toward the trained weights per segment."),
    adapt_seg: int = typer.Option(ADAPT_DEFAULTS[2], "--adapt-seg", min=1, help="With --adapt-on: characters per segment (one step each)."),
):
    """Generate text, feeding each character back in.

    Without --prime the model starts from a newline (or, if the vocabulary has none, a space, else its first character).
    """
    import numpy as np

    from charlm import lm
    from charlm.errors import CheckpointError
    from charlm.lm.mixture import with_mix
    model = lm.load(checkpoint)
    if adapt_on is not None:
        from charlm.lm.adapt import Settings, adapt_file
        model = adapt_file(model, adapt_on, Settings(adapt_lr, adapt_decay, adapt_seg))
    model = with_mix(model, [lm.load(p) for p in mix or []], mix_weights)
    prime_ids, shown = _prime(model.vocab, prime, unknown.value)
    rng = np.random.default_rng(seed)
    try:
        _write(model, prime_ids, shown, length, rng, temperature,
               top_k if top_k <= model.vocab.size else 0, top_p)
    except FloatingPointError:
        raise CheckpointError(f"{checkpoint}: the model produced non-finite probabilities; "
                              "the checkpoint is unusable") from None
    except KeyboardInterrupt:
        # keep what was printed, then die by SIGINT (typer would make it a plain exit 130)
        from charlm.errors import die_by_signal
        _flush_quietly(sys.stdout)
        die_by_signal(signal.SIGINT)
        raise
    except BrokenPipeError:
        discard_stdout()                           # `| head`: the reader went away; not an error


def _prime(vocab, prime, unknown):
    """(the prime's ids, the text to print first). Without a prime: a newline, else a space,
    else the first character of the vocabulary, none of them printed."""
    import numpy as np

    from charlm.cli import render
    from charlm.errors import CorpusError
    if not prime:
        start = next((c for c in ("\n", " ") if vocab.index(c) is not None), vocab.char(0))
        return np.array([vocab.index(start)]), ""
    prime_ids, skipped = vocab.encode(prime, unknown=unknown, what="--prime")
    if len(prime_ids) == 0:
        raise CorpusError("no character of --prime is in the model's vocabulary; "
                          "give a prime made of characters from the training text")
    if skipped:
        render.note(f"note: skipped {skipped} character{'s' * (skipped > 1)} of "
                    "--prime that the model's vocabulary lacks")
    return prime_ids, prime if unknown == "error" else vocab.decode(prime_ids)


def _write(model, prime_ids, shown, length, rng, temperature, top_k, top_p):
    """The prime, then each character as it is drawn (flushed on a terminal or a newline)."""
    import numpy as np

    from charlm.lm.sampling import generate
    out = sys.stdout
    interactive = out.isatty()
    out.write(shown)
    out.flush()
    # non-finite values are caught by draw(); numpy's warnings would only add noise
    with np.errstate(all="ignore"):
        for char_id in generate(model.stepper(), [int(i) for i in prime_ids], length, rng,
                                temperature, top_k, top_p):
            ch = model.vocab.char(char_id)
            out.write(ch)
            if interactive or ch == "\n":
                out.flush()
    if shown or length:                         # --length 0 without a prime prints nothing
        out.write("\n")
    out.flush()


def _flush_quietly(out):
    try:
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        discard_stdout()
