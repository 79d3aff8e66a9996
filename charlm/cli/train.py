"""`charlm train`: options -> charlm.train.session -> a progress view (charlm.cli.train_view)."""

from enum import Enum
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app
from charlm.names import NGRAM
from charlm.train.config import ADAPTIVE_FROM, DEFAULT_EMBED, LIMITS, RESUMED

D = o.default


@app.command()
def train(
    corpus: list[Path] = typer.Argument(..., help="UTF-8 text file(s) or directories."),
    cell: o.Cell | None = typer.Option(None, help="rnn, lstm, gru, or ngram (Kneser-Ney baseline).", show_default=D("cell")),
    activation: o.Activation | None = typer.Option(None, help="rnn nonlinearity.", show_default=D("activation")),
    layers: int | None = typer.Option(None, min=1, max=64, help="Stacked layers (with --time-budget and no size option: chosen for you).", show_default=D("layers")),
    hidden: int | None = typer.Option(None, min=1, max=65536, help="Hidden size (likewise).", show_default=D("hidden")),
    dropout: float | None = typer.Option(None, callback=o.fraction, help="Dropout between layers and before the head (likewise).", show_default=D("dropout")),
    embed: int | None = typer.Option(None, min=0, max=65536, help="Learn an input embedding of E dimensions (nn.Embedding), as for a large vocabulary; 0 = one-hot input.", show_default=D("embed")),
    softmax: o.Softmax | None = typer.Option(None, help=f"The output layer: full, or adaptive (nn.AdaptiveLogSoftmaxWithLoss) for a large vocabulary; both --embed {DEFAULT_EMBED} and adaptive are chosen from {ADAPTIVE_FROM:,} distinct characters up.", show_default=D("softmax")),
    cutoffs: str | None = typer.Option(None, help="The adaptive softmax's cluster bounds over the frequency-ranked characters, e.g. 500,2000.", show_default="shares 80/95/99% of the text"),
    div_value: float | None = typer.Option(None, "--div-value", min=1.0, max=64.0, callback=o.finite, help="The adaptive softmax's shrink of each cluster's inner size.", show_default=D("div_value")),
    bidirectional: bool | None = typer.Option(None, "--bidirectional", help="Train the cloze model: a forward and a backward network predict each character from both sides (for charlm fill and eval cloze; it cannot sample).", show_default=False),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="BPTT unroll length T.", show_default=D("seq_len")),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Parallel streams B.", show_default=D("batch_size")),
    lr: float | None = typer.Option(None, callback=o.positive, help="Learning rate.", show_default=D("lr")),
    optimizer: o.OptimizerName | None = typer.Option(None, show_default=D("optimizer")),
    lr_schedule: o.Schedule | None = typer.Option(None, "--lr-schedule", help="constant, cosine (with warm-up) or step (x0.5 every third of the run).", show_default=D("lr_schedule")),
    warmup: float | None = typer.Option(None, callback=o.fraction, help="Warm-up as a fraction of the run.", show_default=D("warmup")),
    weight_decay: float | None = typer.Option(None, "--weight-decay", callback=o.non_negative, help="L2 (decoupled for adamw).", show_default=D("weight_decay")),
    clip_norm: float | None = typer.Option(None, "--clip-norm", callback=o.positive, help="Global L2 gradient clipping.", show_default=D("clip_norm")),
    clip_value: float | None = typer.Option(None, "--clip-value", callback=o.non_negative, help="Element-wise gradient clipping; 0 = off.", show_default=D("clip_value")),
    steps: int | None = typer.Option(None, min=1, help="Stop after this many steps (whole run)."),
    epochs: float | None = typer.Option(None, callback=o.positive, help="Stop after this many passes."),
    time_budget: float | None = typer.Option(None, "--time-budget", callback=o.positive, help="Stop after this many seconds, final evaluation included."),
    eval_every: int | None = typer.Option(None, "--eval-every", min=1, help="Validate and save every N steps.", show_default="10 times per run"),
    eval_seconds: float | None = typer.Option(None, "--eval-seconds", callback=o.positive, help="Validate and save every N seconds instead.", show_default="a fifth of --time-budget"),
    eval_streams: int | None = typer.Option(None, "--eval-streams", min=1, help="Streams for validation scoring (see eval perplexity --streams).", show_default=D("eval_streams")),
    eval_chars: int | None = typer.Option(None, "--eval-chars", min=2, help="Cap the validation text (for huge corpora)."),
    val_frac: float | None = typer.Option(None, "--val-frac", callback=o.fraction, help="Tail fraction held out for validation.", show_default=D("val_frac")),
    seed: int | None = typer.Option(None, min=0, help="Random seed.", show_default=D("seed")),
    state_reset: float | None = typer.Option(None, "--state-reset", callback=o.fraction, help="Chance per stream and step that the carried state restarts from zero.", show_default=D("state_reset")),
    reset_at: str | None = typer.Option(None, "--reset-at", callback=o.separator, help="Documents: restart the hidden state after each occurrence of this text, e.g. '\\n%\\n' or '\\n\\n' (\\n, \\t, \\r and \\\\ are understood); kept in the checkpoint, so eval and sample restart there too.", show_default="no separator"),
    patience: int | None = typer.Option(None, min=0, help="Stop after N evaluations without improvement; 0 = off."),
    max_rollbacks: int | None = typer.Option(None, "--max-rollbacks", min=0, max=1000, help="On divergence, return to the last good state with half the learning rate at most this often, then stop (exit 6).", show_default=D("max_rollbacks")),
    sample_every: int | None = typer.Option(None, "--sample-every", min=1, help="Show a short sample at every Nth validation.", show_default=D("sample_every")),
    no_samples: bool = typer.Option(False, "--no-samples", help="No samples during training."),
    order: int = typer.Option(6, min=1, max=12, help="n-gram order (--cell ngram)."),
    out: Path | None = typer.Option(None, help="Run directory for last.npz, best.npz, metrics.jsonl.", show_default="runs/<corpus name>"),
    resume: Path | None = typer.Option(None, help="Continue the run saved in this checkpoint."),
    init_from: Path | None = typer.Option(None, "--init-from", help="Fine-tune: start a new run from this trained model's weights (its architecture; characters it does not know are added)."),
    force: bool = typer.Option(False, help="Overwrite checkpoints already in --out."),
    encoding_errors: o.EncodingErrors = typer.Option(o.EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Train a model on CORPUS and save checkpoints to --out."""
    values = locals()
    given = {k: _plain(values[k]) for k in RESUMED if values[k] is not None}
    limits = {k: values[k] for k in LIMITS}
    if no_samples:
        limits["sample_every"] = 0
    if given.get("cell") == NGRAM:
        _train_ngram(corpus, given, order, out, resume, force, encoding_errors.value, init_from)
    else:
        _train_neural(corpus, given, limits, out, (resume, init_from), force,
                      encoding_errors.value, quiet)


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def _train_neural(corpus_paths, given, limits, out, start, force, encoding_errors, quiet):
    """start: (the checkpoint to resume, the model to fine-tune), either or both None."""
    from charlm.cli import render, train_view
    from charlm.train import session
    from charlm.train.rundir import RunDir
    resume, init_from = start
    corpus = render.read_corpus(corpus_paths, encoding_errors)
    plan = session.plan(corpus, corpus_paths, given, limits, out, resume, init_from)
    for note in plan.notes:
        render.warn(note)
    for line in plan.chosen:
        render.note(line)
    with RunDir(plan.out, fresh=resume is None, force=force):
        from charlm.train.mixture import RunMixture
        # a mixture is of left-to-right models; the bidirectional model has no such score.
        # The n-gram is fitted first, so that auto-size plans with the seconds left.
        mixture = None if plan.tcfg.bidirectional else RunMixture.of_plan(plan)
        trainer, reason = session.start(plan, mixture.fit_seconds if mixture else 0.0)
        if reason:
            render.note(f"auto-size: {reason} (set --hidden/--layers to choose yourself)")
        finish = mixture.attach(trainer).finish if mixture else None
        train_view.show(trainer, corpus, quiet, finish)


def _train_ngram(corpus_paths, given, order, out, resume, force, encoding_errors, init_from):
    """Fit and save the Kneser-Ney baseline, then show its validation score."""
    from charlm.cli import render
    from charlm.errors import UsageError
    from charlm.train import ngram
    from charlm.train.rundir import RunDir
    if init_from is not None:
        raise UsageError("--init-from fine-tunes a recurrent model; an n-gram model is "
                         "counted afresh in seconds: drop --init-from")
    out = ngram.plan_out(corpus_paths, given, out, resume)
    corpus = render.read_corpus(corpus_paths, encoding_errors)
    with RunDir(out, fresh=True, force=force, resumable=False):
        model, val, fit_seconds = ngram.fit_and_save(corpus, given.get("val_frac", 0.1),
                                                     order, out)
    table = render.key_value_table(f"{order}-gram Kneser-Ney baseline")
    table.add_row("n-grams kept", f"{sum(model.sizes()):,}")
    table.add_row("fit time", f"{fit_seconds:.2f} s")
    if val is not None:
        table.add_row("val", render.nats(val))
    table.add_row("checkpoints", f"{out / 'last.npz'}, {out / 'best.npz'}")
    render.err_console.print(table)
