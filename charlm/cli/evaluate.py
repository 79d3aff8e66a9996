"""`charlm eval perplexity`: the score of any model, and of others beside it, on the same text."""

import json
import math
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import eval_app
from charlm.names import ADAPT_DEFAULTS


@eval_app.command("perplexity")
def eval_perplexity(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    files: list[Path] | None = typer.Argument(None, help="Text files to score."),
    corpus: list[Path] | None = typer.Option(None, help="Score a split of this training corpus instead."),
    split: o.Split | None = typer.Option(None, help="With --corpus: val, train or all.", show_default="val"),
    val_frac: float | None = typer.Option(None, "--val-frac", callback=o.fraction, help="With --corpus: override the checkpoint's split."),
    streams: int = typer.Option(1, min=1, help="Score in S parallel pieces (1 = exact definition)."),
    compare: list[Path] | None = typer.Option(None, help="Another checkpoint to score on the same text (repeatable)."),
    mix: list[Path] | None = typer.Option(None, help="Mix CHECKPOINT with this model (repeatable); weights adapt online."),
    mix_weights: str | None = typer.Option(None, "--mix-weights", callback=o.mix_weights, help="Fixed weights w1,w2,... for CHECKPOINT and each --mix model."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Characters outside the vocabulary: error or skip."),
    encoding_errors: o.EncodingErrors = typer.Option(o.EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    adapt: bool = typer.Option(False, help="Dynamic evaluation: after scoring each segment, take a gradient step on it."),
    adapt_lr: float = typer.Option(ADAPT_DEFAULTS[0], "--adapt-lr", callback=o.non_negative, help="With --adapt: the step size (0 = the static score)."),
    adapt_decay: float = typer.Option(ADAPT_DEFAULTS[1], "--adapt-decay", callback=o.non_negative, help="With --adapt: the pull back toward the trained weights per segment."),
    adapt_seg: int = typer.Option(ADAPT_DEFAULTS[2], "--adapt-seg", min=1, help="With --adapt: characters per segment (one step each)."),
):
    """Mean nats/char, bits/char and perplexity of CHECKPOINT on text."""
    from charlm import lm
    from charlm.errors import UsageError
    files, corpus, compare = files or [], corpus or [], compare or []
    if files and corpus:
        raise UsageError("give text FILES or --corpus, not both")
    if not files and not corpus:
        raise UsageError("nothing to score: give text FILES, or --corpus FILE --split val")
    if files and (split is not None or val_frac is not None):
        # a split of a text given as FILES would silently score the whole file
        raise UsageError("--split and --val-frac apply to --corpus: to score part of the "
                         "training text, give it as --corpus FILE --split val")
    from charlm.lm.mixture import with_mix
    main = with_mix(lm.load(checkpoint), [lm.load(p) for p in mix or []], mix_weights)
    models = [main, *(lm.load(p) for p in compare)]
    texts = _Texts(files, corpus, split.value if split else "val", val_frac, unknown.value,
                   encoding_errors.value)
    if adapt:
        from charlm.lm.adapt import Settings, with_adapt
        models[0] = with_adapt(main, Settings(adapt_lr, adapt_decay, adapt_seg), texts.rms_of)
    results = [(model, _score(model, texts, streams, unknown.value)) for model in models]
    if as_json:
        shown = [{"checkpoint": str(m.path), **r} for m, r in results] if compare \
            else results[0][1]
        print(json.dumps(shown, indent=2))
    else:
        _print_results(results)


def _score(model, texts, streams, unknown):
    """summarize()'s figures of model on the texts in its vocabulary (and the skipped count)."""
    import numpy as np

    from charlm import lm
    from charlm.errors import CheckpointError, CorpusError
    ids_list, skipped = texts.for_model(model)
    nll, count = 0.0, 0
    with np.errstate(all="ignore"):             # a non-finite score is reported below
        for ids in ids_list:
            n, c = model.score(ids, streams)
            nll, count = nll + n, count + c
    if count == 0:
        raise CorpusError("the text has fewer than two characters; nothing to predict")
    if not math.isfinite(nll):
        raise CheckpointError(f"{model.path}: the model produced non-finite probabilities "
                              f"(total {nll}); the checkpoint is unusable")
    result = lm.summarize(nll, count)
    if unknown == "skip":
        result["skipped"] = skipped
    return result


class _Texts:
    """The text to score, encoded in each model's own vocabulary (they may differ)."""

    def __init__(self, files, corpus_paths, split, val_frac, unknown, encoding_errors):
        self.files, self.corpus_paths = files, corpus_paths
        self.split, self.val_frac = split, val_frac
        self.unknown, self.encoding_errors = unknown, encoding_errors
        self._corpus = None

    @property
    def corpus(self):
        """The corpus, read once (its warnings shown once) for all the models."""
        if self._corpus is None:
            from charlm.cli import render
            self._corpus = render.read_corpus(self.corpus_paths, self.encoding_errors)
        return self._corpus

    def rms_of(self, neural):
        """--adapt's gradient RMS for a checkpoint that holds none: from --corpus's training
        split."""
        from charlm.errors import UsageError
        from charlm.lm.adapt import training_rms
        if not self.corpus_paths:
            raise UsageError(f"{neural.path} holds no gradient statistics for --adapt; pass "
                             "the run's mix.npz (its model holds them), or score --corpus "
                             "TRAINING_TEXT --split val, whose training split gives them")
        from charlm.data import text
        val_frac = neural.config.get("train", {}).get("val_frac", 0.1)
        train_ids, _ = text.split_train_val(self.corpus.ids, val_frac)
        ids, _ = neural.vocab.encode_codepoints(self.corpus.vocab.codepoints[train_ids], "skip")
        return training_rms(neural, ids)[0]

    def for_model(self, model):
        """(id arrays in model's vocabulary, how many characters were skipped)."""
        from charlm.data import text
        vocab = model.vocab
        if self.files:
            texts, skipped = [], 0
            for f in self.files:
                ids, n = text.encode_file(f, vocab, unknown=self.unknown,
                                          encoding_errors=self.encoding_errors)
                texts.append(ids)
                skipped += n
            return texts, skipped
        corpus = self.corpus
        trained_on = model.config.get("data", {}).get("fingerprint")
        if self.split != "all" and trained_on and trained_on != corpus.fingerprint:
            from charlm.cli import render
            render.note(f"note: {model.path} was trained on a different text, so this --split "
                        "is not its held-out part")
        val_frac = self.val_frac
        if val_frac is None:
            val_frac = model.config.get("train", {}).get("val_frac", 0.1)
        train_ids, val_ids = text.split_train_val(corpus.ids, val_frac)
        chosen = {"val": val_ids, "train": train_ids, "all": corpus.ids}[self.split]
        # the corpus has its own vocabulary: re-encode its code points in the model's
        ids, skipped = vocab.encode_codepoints(corpus.vocab.codepoints[chosen], self.unknown)
        return [ids], skipped


def _print_results(results):
    from rich.table import Table

    from charlm.cli import render
    skipped = any("skipped" in r for _, r in results)     # --unknown skip: per model, since
    table = Table(title="perplexity")                     # each has its own vocabulary
    table.add_column("checkpoint", overflow="fold")
    table.add_column("model", overflow="fold")
    columns = ("predictions", "nats/char", "bits/char", "perplexity") + (
        ("skipped",) if skipped else ())
    for column in columns:
        table.add_column(column, justify="right")
    for model, r in results:
        row = [str(model.path), model.describe(), f"{r['chars']:,}", f"{r['nats_per_char']:.4f}",
               f"{r['bits_per_char']:.4f}", f"{r['perplexity']:.3f}"]
        table.add_row(*row, *([f"{r['skipped']:,}"] if skipped else []))
    render.print_table(table)
