"""What `charlm train` shows while it runs: the opening line, a progress bar on a terminal or
one line per validation into a file, warnings beside the bar, and the summary table.

Signals: the first SIGINT or SIGTERM asks the trainer to save and stop at the next step
boundary; a second one stops at once, saving nothing.
"""

import math
import os
import signal
import sys

from tqdm import tqdm

from charlm.cli import render
from charlm.errors import die_by_signal


def show(trainer, corpus, quiet, finish=None):
    """Run trainer.run() to its end, rendering its events; finish() after a completed run
    gives the n-gram and mixture figures for the summary (charlm.train.mixture)."""
    view = TrainView(trainer, quiet)
    view.opening(corpus)

    def on_signal(signum, frame):
        if trainer.stop_signal is None:
            trainer.stop_signal = signum            # acted on at the next step boundary
        else:
            raise KeyboardInterrupt                 # a second signal: stop now, save nothing
    view.previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for event in trainer.run():
            getattr(view, "on_" + event["event"])(event)
    finally:
        view.close()
    if view.summary is not None:
        view.print_summary(finish() if finish else None)


def _can_draw_a_bar():
    """A terminal that reports its width: some (script, CI consoles) say 0 x 0."""
    if not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except OSError:
        return False


class TrainView:
    def __init__(self, trainer, quiet):
        self.trainer, self.tcfg, self.quiet = trainer, trainer.tcfg, quiet
        self.bar, self.summary, self.previous = None, None, {}
        self.val_text, self.warned_skip, self.stopped_early = "-", False, None
        # a file, a pipe or a terminal without a width (a bar cannot be drawn there) gets one
        # line per validation instead of a redrawn bar
        self.log_lines, self.chars_per_s = not quiet and not _can_draw_a_bar(), 0.0
        total = trainer.total_steps
        self.of_steps = f" of {total:,}" if total else ""

    def opening(self, corpus):
        t, tcfg = self.trainer, self.tcfg
        train_chars = len(t.train_ids)
        n_files = corpus.fingerprint.get("files", 1)
        source = f" from {n_files:,} files" if n_files > 1 else ""
        done = t.progress.step
        verb = f"resuming at step {done:,}: training" if done else "training"
        embedding = f"embedding {tcfg.embed}, " if tcfg.embed else ""
        render.note(
            f"{verb} a {tcfg.layers}-layer {tcfg.cell.upper()} (hidden {tcfg.hidden}, "
            f"{embedding}{t.flat.size:,} parameters) on {train_chars:,} characters "
            f"({corpus.fingerprint['chars'] - train_chars:,} more held out for validation)"
            f"{source}, vocabulary {t.vocab.size}; batch {tcfg.batch_size} x {tcfg.seq_len}; "
            f"run directory {t.out}")

    def say(self, message):
        """A line on stderr that the progress bar does not draw over."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            render.note(message)

    def on_start(self, event):
        if self.quiet or self.log_lines:
            return
        total = event["total_steps"] or None
        unit = "step" if total else "s"
        if self.tcfg.time_budget and not total:
            total = self.tcfg.time_budget
        self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr,
                        initial=0, mininterval=0.2,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} "
                        "[{elapsed}<{remaining}{postfix}]")

    def on_step(self, event):
        if not self.warned_skip and not (
                math.isfinite(event["loss"]) and math.isfinite(event["grad_norm"])):
            self.warned_skip = True                 # once; the summary has the count
            self.say(f"warning: step {event['step']} had a non-finite loss ({event['loss']:g}) "
                     f"or gradient norm ({event['grad_norm']:g}); its update was skipped")
        if self.log_lines:
            self.chars_per_s = event["chars_per_s"]
        elif self.bar is not None:
            bar = self.bar
            bar.n = (event["step"] if self.trainer.total_steps
                     else min(event["elapsed"], bar.total))
            bar.set_postfix_str(f"loss {event['loss']:.3f}, val {self.val_text}, "
                                f"{event['chars_per_s'] / 1000:.1f}k chars/s", refresh=False)
            bar.update(0)                           # redraws at most every mininterval

    def on_eval(self, event):
        if event["val_loss"] is not None:
            self.val_text = f"{event['val_loss']:.3f}"
        if self.log_lines:
            best = " (best so far)" if event["improved"] else ""
            render.note(f"step {event['step']:,}{self.of_steps}, {event['elapsed']:.0f} s: "
                        f"train loss {event['train_loss']:.3f}, val {self.val_text}{best}, "
                        f"{self.chars_per_s / 1000:.1f}k chars/s")

    def on_complete(self, event):
        render.note(f"already complete at step {event['step']}; nothing to do")

    def on_interrupted(self, event):
        self.close()
        name = signal.Signals(event["signal"]).name
        render.note(f"{name}: saved step {event['step']} to {event['path']}; "
                    f"continue with --resume {event['path']}")
        die_by_signal(event["signal"])

    def on_early_stop(self, event):
        patience = self.tcfg.patience
        self.stopped_early = (f"at step {event['step']:,}: validation loss not improved for "
                              f"{patience} evaluations (--patience {patience})")
        self.say(f"stopping early {self.stopped_early}")

    def on_done(self, event):
        self.summary = event

    def close(self):
        """Close the bar and give the signals back their handlers."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def print_summary(self, mixture=None):
        s = self.summary
        table = render.key_value_table("training summary")
        table.add_row("parameters", f"{s['parameters']:,}")
        table.add_row("steps", f"{s['step']:,}")
        table.add_row("time", f"{s['elapsed']:.1f} s")
        if self.stopped_early:
            table.add_row("stopped early", self.stopped_early)
        for label, nats in (("last val", s["last_val"]), ("best val", s["best_val"])):
            if nats is not None:
                table.add_row(label, render.nats(nats))
        if s["skipped"]:
            table.add_row("skipped steps", str(s["skipped"]))
        written = ["last.npz"] + (["best.npz"] if s["best_val"] is not None else [])
        table.add_row("checkpoints", ", ".join(str(self.trainer.out / n) for n in written))
        if mixture:
            _mixture_rows(table, mixture)
        render.print_table(table, stderr=True)


def _mixture_rows(table, m):
    """The run's n-gram and its mixture with best.npz (charlm.train.mixture)."""
    table.add_row(f"{m['ngram_order']}-gram val", f"{render.nats(m['ngram_val'])} "
                  f"(fitted in {m['ngram_seconds']:.1f} s)")
    table.add_row("model + n-gram val", f"{render.nats(m['mix_val'])}: pass {m['mix']} "
                  "to sample and eval perplexity")
