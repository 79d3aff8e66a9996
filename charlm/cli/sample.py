"""`charlm sample`: text from any model, each character fed back in as the next input; several
samples, stop strings, a template to fill, beam search, and each sample's log-probability."""

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app, discard_stdout
from charlm.names import ADAPT_DEFAULTS

DEFAULT_LENGTH = 500


@app.command()
def sample(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    prime: str = typer.Option("", help="Text to start from (printed first)."),
    prime_file: Path | None = typer.Option(None, "--prime-file", help="Start from this UTF-8 file's text instead (newlines and all)."),
    encoding_errors: o.EncodingErrors = typer.Option(o.EncodingErrors.strict, "--encoding-errors", help="For --prime-file: strict, or replace invalid UTF-8 with U+FFFD."),
    length: int | None = typer.Option(None, min=0, help="Characters to generate (the prime not counted).", show_default=str(DEFAULT_LENGTH)),
    temperature: float = typer.Option(1.0, callback=o.non_negative, help="Softmax temperature; 0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample from the k most likely characters; 0 = all."),
    top_p: float = typer.Option(1.0, "--top-p", callback=o.top_p, help="Nucleus sampling mass."),
    seed: int | None = typer.Option(None, min=0, help="Random seed for a repeatable sample."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Prime characters outside the vocabulary: error or skip."),
    num_samples: int = typer.Option(1, "--num-samples", min=1, help="How many samples, each from the prime."),
    stop: list[str] | None = typer.Option(None, help="End a sample where this text first occurs, included (repeatable; \\n is a newline)."),
    template: str | None = typer.Option(None, help="A form to fill: '_' is chosen by the model, every other character is forced (\\n newline, \\_ underscore)."),
    allow: list[str] | None = typer.Option(None, help="Characters a template's '_' may also take, and/or the classes [:space:] [:punct:] [:cntrl:] (repeatable)."),
    beam: int | None = typer.Option(None, min=1, help="Beam search of width W for the most likely continuation (deterministic)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per sample: text, chars, log_prob, nats_per_char."),
    mix: list[Path] | None = typer.Option(None, help="Mix CHECKPOINT with this model (repeatable); weights adapt online."),
    mix_weights: str | None = typer.Option(None, "--mix-weights", callback=o.mix_weights, help="Fixed weights w1,w2,... for CHECKPOINT and each --mix model."),
    adapt_on: Path | None = typer.Option(None, "--adapt-on", help="Adapt the model to this text first (dynamic evaluation), then sample in its style."),
    adapt_lr: float = typer.Option(ADAPT_DEFAULTS[0], "--adapt-lr", callback=o.non_negative, help="With --adapt-on: the step size."),
    adapt_decay: float = typer.Option(ADAPT_DEFAULTS[1], "--adapt-decay", callback=o.non_negative, help="With --adapt-on: the pull back toward the trained weights per segment."),
    adapt_seg: int = typer.Option(ADAPT_DEFAULTS[2], "--adapt-seg", min=1, help="With --adapt-on: characters per segment (one step each)."),
):
    """Generate text, feeding each character back in.

    Without --prime the model starts from a newline (or, if the vocabulary has none, a space, else its first character); a model trained with --reset-at starts a document: from its separator's last character.
    """
    import numpy as np

    from charlm import lm
    from charlm.errors import CheckpointError
    _check_combinations(prime, prime_file, length, template, allow, beam, num_samples,
                        temperature, top_k, top_p)
    from charlm.lm.mixture import with_mix
    model = lm.load(checkpoint)
    if adapt_on is not None:
        from charlm.lm.adapt import Settings, adapt_file
        model = adapt_file(model, adapt_on, Settings(adapt_lr, adapt_decay, adapt_seg))
    model = with_mix(model, [lm.load(p) for p in mix or []], mix_weights)
    if prime_file is not None:
        prime = _read_prime(prime_file, encoding_errors.value)
    job = _Job.build(model, prime, length, template, allow or [], stop or [], unknown.value)
    job.settings = (temperature, top_k if top_k <= model.vocab.size else 0, top_p)
    job.beam, job.as_json = beam, as_json
    try:
        _write(job, num_samples, np.random.default_rng(seed))
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


def _check_combinations(prime, prime_file, length, template, allow, beam, num_samples,
                        temperature, top_k, top_p):
    from charlm.errors import UsageError
    if prime and prime_file is not None:
        raise UsageError("give --prime or --prime-file, not both")
    if template is not None and length is not None:
        raise UsageError("--template sets the length (one character per template character); "
                         "drop --length")
    if allow and template is None:
        raise UsageError("--allow widens what a --template's '_' may take; give a --template")
    if beam is not None and (temperature != 1 or top_k or top_p != 1):
        raise UsageError("--beam searches the model's own distribution; drop --temperature, "
                         "--top-k and --top-p")
    if beam is not None and num_samples > 1:
        raise UsageError("--beam gives one continuation, the most likely; drop --num-samples")


@dataclass
class _Job:
    """What every sample of one command shares."""

    model: object
    prime_ids: list
    shown: str                       # the prime as printed
    form: object                     # charlm.lm.template.Form
    stops: object                    # charlm.lm.template.Stops
    settings: tuple = (1.0, 0, 1.0)  # temperature, top-k, top-p
    beam: int | None = None
    as_json: bool = False

    @classmethod
    def build(cls, model, prime, length, template, allow, stop, unknown):
        from charlm.lm.template import Form, parse_stops, parse_template
        vocab = model.vocab
        separator = (model.config.get("model") or {}).get("reset_at") or ""
        prime_ids, shown = _prime(vocab, prime, unknown, separator[-1:])
        form = parse_template(template, vocab, allow) if template is not None else \
            Form.free(DEFAULT_LENGTH if length is None else length)
        return cls(model, [int(i) for i in prime_ids], shown, form, parse_stops(stop, vocab))


def _read_prime(path, encoding_errors):
    from charlm.data import text
    from charlm.errors import CorpusError
    prime = text.read_text_file(path, encoding_errors)
    if not prime:
        raise CorpusError(f"--prime-file {path} is empty; give a file with the text to start from")
    return prime


def _prime(vocab, prime, unknown, start=""):
    """(the prime's ids, the text to print first). Without a prime: start (a document
    separator's last character), else a newline, else a space, else the first character of
    the vocabulary, none of them printed."""
    import numpy as np

    from charlm.cli import render
    from charlm.errors import CorpusError
    if not prime:
        start = start or next((c for c in ("\n", " ") if vocab.index(c) is not None),
                              vocab.char(0))
        return np.array([vocab.index(start)]), ""
    prime_ids, skipped = vocab.encode(prime, unknown=unknown, what="--prime")
    if len(prime_ids) == 0:
        raise CorpusError("no character of --prime is in the model's vocabulary; "
                          "give a prime made of characters from the training text")
    if skipped:
        render.note(f"note: skipped {skipped} character{'s' * (skipped > 1)} of "
                    "--prime that the model's vocabulary lacks")
    return prime_ids, prime if unknown == "error" else vocab.decode(prime_ids)


def _write(job, num_samples, rng):
    """Each sample as it is produced: the prime, then each character (flushed on a terminal
    or a newline); or with --json one line per sample."""
    import json

    import numpy as np
    out = sys.stdout
    interactive = out.isatty()
    stepper = job.model.stepper()
    # non-finite values are caught by the sampler; numpy's warnings would only add noise
    with np.errstate(all="ignore"):
        runs = _Runs(job, stepper, rng)
        for n in range(num_samples):
            if not job.as_json:
                out.write(("\n" if n else "") + job.shown)
                out.flush()
            chars = []
            for char_id in runs.next_sample():
                ch = job.model.vocab.char(char_id)
                chars.append(ch)
                if not job.as_json:
                    out.write(ch)
                    if interactive or ch == "\n":
                        out.flush()
            text = "".join(chars)
            if job.as_json:
                out.write(json.dumps(_record(text, runs.log_prob), ensure_ascii=False) + "\n")
            elif (job.shown or text) and not (job.shown + text).endswith("\n"):
                out.write("\n")                # --length 0 without a prime prints nothing
            out.flush()
            if job.beam is not None and not job.as_json:
                _note_score(text, runs.log_prob)


class _Runs:
    """The samples of one job from one stepper: the prime is read once, its state restored
    before each sample; log_prob is the last sample's once its ids are exhausted."""

    def __init__(self, job, stepper, rng):
        from charlm.lm.sampling import feed
        self.job, self.stepper, self.rng = job, stepper, rng
        self.logits = feed(stepper, job.prime_ids)
        self.after_prime = stepper.snapshot()
        self.log_prob = 0.0

    def next_sample(self):
        from charlm.lm.beam import beam_search
        from charlm.lm.sampling import generate
        job, self.log_prob = self.job, 0.0
        self.stepper.restore(self.after_prime)
        if job.beam is not None:
            self.log_prob = yield from beam_search(self.stepper, job.prime_ids, job.form,
                                                   job.beam, job.stops, job.model.vocab,
                                                   self.logits)
            return
        for char_id, log_prob in generate(self.stepper, job.prime_ids, job.form, self.rng,
                                          *job.settings, stops=job.stops,
                                          vocab=job.model.vocab, logits=self.logits):
            self.log_prob += log_prob
            yield char_id


def _record(text, log_prob):
    """A sample as --json prints it."""
    return {"text": text, "chars": len(text), "log_prob": log_prob,
            "nats_per_char": (0.0 - log_prob) / len(text) if text else None}


def _note_score(text, log_prob):
    from charlm.cli import render
    per_char = f", {-log_prob / len(text):.4f} nats/char" if text else ""
    render.note(f"log-probability {log_prob:.4f} nats over {len(text)} characters{per_char}")


def _flush_quietly(out):
    try:
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        discard_stdout()
