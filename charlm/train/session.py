"""From what the user asked for to a ready Trainer: the settings of a fresh or resumed run,
the corpus checks, and the auto-size probes. The CLI calls plan(), opens the run directory
(charlm.train.rundir), then start(); everything it should tell the user is returned, never
printed.
"""

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from charlm.data import text
from charlm.data.batching import steps_per_epoch
from charlm.errors import CheckpointError, CorpusError, UsageError
from charlm.io import checkpoint
from charlm.names import NGRAM
from charlm.nn import output, resets
from charlm.train import autosize, finetune, largevocab
from charlm.train.config import DEFAULTS, SIZE_OPTIONS, TrainConfig
from charlm.train.guard import Divergence
from charlm.train.rundir import check_not_corpus
from charlm.train.trainer import Trainer


@dataclass
class Plan:
    """A run ready to start: its settings, data, directory and, for a resume, its checkpoint."""

    tcfg: TrainConfig
    corpus: text.Corpus
    train_ids: object                 # (N_train,) ids
    val_ids: object                   # (N_val,) ids
    out: Path
    resume: checkpoint.Loaded | None
    auto_size: bool                   # choose layers, hidden and dropout for the time budget
    notes: list[str] = field(default_factory=list)   # warnings for the user
    chosen: list[str] = field(default_factory=list)  # settings charlm chose, and why
    base: checkpoint.Loaded | None = None  # the trained model a fine-tuning run starts from
    auto_cutoffs: bool = False        # the adaptive softmax's cutoffs are charlm's to choose

    @property
    def data_info(self):
        return {"fingerprint": self.corpus.fingerprint, "train_chars": int(len(self.train_ids)),
                "val_chars": int(len(self.val_ids))}


def plan(corpus, corpus_paths, given, limits, out=None, resume=None, init_from=None):
    """The run for corpus (read from corpus_paths). given: the model and training settings the
    user typed (charlm.train.config.RESUMED); limits: how long and how to watch (LIMITS,
    None where not given); resume: the path of a checkpoint to continue; init_from: the path
    of a trained model to fine-tune (charlm.train.finetune)."""
    limits = {k: v for k, v in limits.items() if v is not None}
    base, chosen = None, []
    if resume is not None and init_from is not None:
        raise UsageError("--init-from starts a new run from a trained model and --resume "
                         "continues a run; give one of them")
    if resume is not None:
        loaded = _resumable(resume)
        tcfg = _resumed_config(loaded, given, limits, resume)
        corpus, train_ids, val_ids = _split(corpus, tcfg, loaded.vocab, resume)
        fingerprint = loaded.config["data"]["fingerprint"]
        if loaded.vocab != corpus.vocab or fingerprint != corpus.fingerprint:
            raise _differs(resume)
        out = out or Path(resume).parent
    elif init_from is not None:
        loaded, base = None, finetune.load_base(init_from)
        tcfg = finetune.settings(base, given, limits, init_from)
        corpus, note = finetune.grown_corpus(base, corpus)
        corpus, train_ids, val_ids = _split(corpus, tcfg, corpus.vocab)
        chosen = [note] if note else []
    else:
        loaded = None
        tcfg, note = largevocab.defaults(TrainConfig(**given, **limits), given, corpus.vocab.size)
        largevocab.check(tcfg, given, corpus.vocab.size)
        corpus, train_ids, val_ids = _split(corpus, tcfg)
        tcfg = largevocab.with_cutoffs(tcfg, train_ids, corpus.vocab.size)
        chosen = [note] if note else []
    if resume is None:
        _check_separator(tcfg.reset_at, corpus)
    if tcfg.bidirectional and tcfg.reset_at:
        raise UsageError("--reset-at restarts a left-to-right model's state at each document, "
                         "and --bidirectional reads both sides of a character; give one of them")
    out = out or Path("runs") / Path(corpus_paths[0]).stem
    check_not_corpus(out, corpus_paths)
    notes = []
    if len(val_ids) < 2:
        notes.append(f"the validation split has {len(val_ids)} characters (--val-frac "
                     f"{tcfg.val_frac:g}); validation is off and best.npz will not be written")
    steps_per_epoch(len(train_ids), tcfg.batch_size, tcfg.seq_len)   # fail before touching out
    auto = (resume is None and base is None and bool(tcfg.time_budget)
            and not set(SIZE_OPTIONS) & given.keys())
    auto_cutoffs = tcfg.softmax == output.ADAPTIVE and "cutoffs" not in given and loaded is None \
        and base is None
    return Plan(tcfg, corpus, train_ids, val_ids, Path(out), loaded, auto, notes, chosen, base,
                auto_cutoffs)


def _resumable(resume):
    """The training checkpoint of a run to continue."""
    if Path(resume).is_dir():
        raise CheckpointError(f"{resume} is a directory; to continue its run, give "
                              f"{Path(resume) / 'last.npz'}")
    loaded = checkpoint.load(resume)
    if loaded.kind == NGRAM:
        raise UsageError(f"{resume} is an n-gram model; there is nothing to resume")
    if checkpoint.is_weights_only(loaded.config, loaded.format_version):
        raise UsageError(f"{resume} holds the model's weights only (the best one); resume "
                         f"the run from its training checkpoint, "
                         f"{Path(resume).parent / 'last.npz'}")
    return loaded


def _differs(resume):
    return CorpusError(f"the corpus differs from the one {resume} was trained on "
                       "(size, content or vocabulary); resume with the same corpus")


def _check_separator(reset_at, corpus):
    """A UsageError unless --reset-at occurs in the corpus: a separator that never occurs is
    a mistake (a different line ending, a missing escape)."""
    if not reset_at:
        return
    sep_ids, unknown = corpus.vocab.encode(reset_at, unknown="skip")
    if unknown or not resets.restarts(corpus.ids, sep_ids).any():
        raise UsageError(f"--reset-at {reset_at!r} never occurs in the corpus; give the text "
                         "that separates its documents (\\n is a newline)")


def _split(corpus, tcfg, vocab=None, resume=None):
    """(corpus, train ids, validation ids); for an adaptive softmax, with the vocabulary ranked
    by frequency in the training split (its clusters are ranges of ids). A fine-tuning run
    keeps the vocabulary it was given (vocab, which must hold the corpus's characters)."""
    if tcfg.init_from and vocab is not None:
        if vocab.extended(corpus.vocab) != vocab:
            raise _differs(resume)
        corpus = finetune.reencoded(corpus, vocab)
        return (corpus, *text.split_train_val(corpus.ids, tcfg.val_frac))
    train_ids, val_ids = text.split_train_val(corpus.ids, tcfg.val_frac)
    if tcfg.softmax == output.ADAPTIVE:
        corpus = text.ranked_by_frequency(corpus, len(train_ids))
        train_ids, val_ids = text.split_train_val(corpus.ids, tcfg.val_frac)
    return corpus, train_ids, val_ids


def _resumed_config(loaded, given, limits, resume):
    saved = loaded.config["train"]
    # a setting older checkpoints lack (embed) was its default then
    kept = {k: saved.get(k, getattr(DEFAULTS, k)) for k in given}
    conflicts = [f"--{k.replace('_', '-')} {v} (checkpoint: {kept[k]})"
                 for k, v in given.items() if kept[k] != v]
    if conflicts:
        raise UsageError(f"{resume} was trained with other settings: {', '.join(conflicts)}; "
                         "drop these options to resume it")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**({k: v for k, v in saved.items() if k in known} | limits))


def start(plan, spent=0.0):
    """(Trainer, what auto-size chose and why, or None). The run directory must be open.
    spent: seconds of the budget already used (the run's n-gram), which auto-size leaves out."""
    tcfg, choice, probe_seconds = plan.tcfg, None, 0.0
    if plan.auto_size:
        started = time.perf_counter()
        tcfg, choice = _auto_size(plan, spent)
        probe_seconds = time.perf_counter() - started
    trainer = Trainer(tcfg, plan.corpus.vocab, plan.train_ids, plan.val_ids, plan.out,
                      plan.data_info, resume=plan.resume, base=plan.base)
    trainer.progress.elapsed += probe_seconds         # the budget covers the probing too
    if choice is not None:                            # metrics.jsonl's opening record has it
        trainer.auto_size = {"layers": choice.layers, "hidden": choice.hidden,
                             "dropout": choice.dropout, "predicted_chars": choice.predicted_chars,
                             "probe_seconds": round(probe_seconds, 3)}
    return trainer, choice and choice.reason


def _auto_size(plan, spent=0.0):
    """Choose layers, hidden size and dropout for the time budget less spent seconds
    (charlm.train.autosize)."""
    tcfg, vocab = plan.tcfg, plan.corpus.vocab

    def time_step(layers, hidden):
        trial = replace(tcfg, layers=layers, hidden=hidden)
        trainer = Trainer(trial, vocab, plan.train_ids, plan.val_ids, plan.out, {})
        times = []
        for _ in range(3):                                 # the first warms up (allocations)
            started = time.perf_counter()
            try:
                trainer.train_step()
            except Divergence:       # the step's work was done; the run itself will recover
                pass
            times.append(time.perf_counter() - started)
        return min(times[1:])

    budget = max(tcfg.time_budget - spent, tcfg.time_budget / 10)
    choice = autosize.choose(tcfg.cell, vocab.size, len(plan.train_ids), budget,
                             tcfg.batch_size, tcfg.seq_len, time_step, tcfg.embed,
                             largevocab.autosize_view(tcfg, plan.train_ids),
                             directions=2 if tcfg.bidirectional else 1)
    tcfg = replace(tcfg, layers=choice.layers, hidden=choice.hidden, dropout=choice.dropout)
    if choice.passes and not (tcfg.epochs or tcfg.steps):
        tcfg = replace(tcfg, epochs=choice.passes)
        # the budget covers the passes 1.5 times over: a larger shortlist, up to 35% slower
        # (V = 6,000), still fits
        if plan.auto_cutoffs and choice.budget_passes >= 1.5 * choice.passes:
            tcfg, why = largevocab.memorising_cutoffs(tcfg, plan.train_ids, vocab.size)
            choice = choice._replace(reason=choice.reason + why)
    return tcfg, choice
