"""Validation loss per CPU-minute: charlm's defaults against PyTorch and the n-gram baseline.

For each time budget, on the same 90/10 tail split:
  * charlm: `charlm train CORPUS --time-budget B` with no other options (a subprocess, exactly
    what a user runs; its own validations, on its default schedule, give the learning curve);
  * PyTorch: the cell and size charlm chose, with the same optimizer (Adam, same rate, the
    same warm-up + cosine schedule laid over the budget), batch, unroll and clipping, trained for
    the same wall-clock budget (skipped when torch is absent);
  * the 6-gram Kneser-Ney baseline (trained in about a second).
A corpus with a large vocabulary (Chinese text: from charlm's ADAPTIVE_FROM distinct characters
up) gets instead, beside charlm's defaults:
  * PyTorch: the model every Chinese char-RNN tutorial writes, nn.Embedding + the cell and size
    charlm chose + nn.Linear and a full softmax, with PyTorch's own initialisation, the same
    dropout, Adam, schedule, batch, unroll and clipping, for the same training time; its best
    validation over the run (as charlm keeps its best) and its last;
  * the best Kneser-Ney order (2 to 7) on validation.
Every final figure is a full validation pass from the zero state (`--streams 1`), mean nats/char.
A second table scores what each charlm run leaves beside best.npz: its n-gram, the mixture
mix.npz, the model with --adapt and mix.npz with --adapt (run_columns).
Writes benchmarks/QUALITY.md and a learning-curve picture benchmarks/quality.svg.

    python benchmarks/quality.py [--budgets 60,120,300,600] [--corpus PATH] [--no-torch]
    python benchmarks/quality.py --corpus ../shared/corpora/zh-tang-song.txt --budgets 60,120,300
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
CHARLM = [sys.executable, "-m", "charlm"]
CURVE_EVERY = 30.0


def charlm_json(*args):
    out = subprocess.run([*CHARLM, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_charlm(corpus, budget, workdir):
    """Train with defaults; returns (curve [(seconds, val)], final val, checkpoint, config)."""
    out = workdir / f"charlm-{budget}"
    started = time.perf_counter()
    # no --eval-seconds: a validation of a long split is seconds of the user's budget
    args = ["train", corpus, "--time-budget", budget, "--out", out, "--quiet", "--force"]
    subprocess.run([*CHARLM, *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["elapsed"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    final = charlm_json("eval", "perplexity", out / "best.npz", "--corpus", corpus, "--split",
                        "val", "--streams", "1", "--json")["nats_per_char"]
    info = charlm_json("info", out / "best.npz", "--json")
    return curve, final, out / "best.npz", info, wall


def run_columns(run_dir, corpus, streams=1, model=None):
    """What one run gives a user beyond best.npz (charlm.train.mixture, charlm.lm.adapt), on
    validation with the default settings: its n-gram (ngram.npz), the model and the mixture
    (mix.npz), the model with --adapt (gradient RMS from the training split) and the mixture
    with --adapt (the RMS stored in mix.npz). model: the model's figure at these streams,
    when the caller has it."""
    def nats(checkpoint, *extra):
        return charlm_json("eval", "perplexity", run_dir / checkpoint, "--corpus", corpus,
                           "--split", "val", "--streams", streams, "--json",
                           *extra)["nats_per_char"]

    started = time.perf_counter()
    columns = {"ngram": nats("ngram.npz"),
               "model": nats("best.npz") if model is None else model, "mix": nats("mix.npz"),
               "adapt": nats("best.npz", "--adapt"), "both": nats("mix.npz", "--adapt")}
    print(f"  n-gram {columns['ngram']:.4f}, mixture {columns['mix']:.4f}, adapted "
          f"{columns['adapt']:.4f}, both {columns['both']:.4f} ({streams} stream(s), "
          f"{time.perf_counter() - started:.0f} s to score)", flush=True)
    return columns


MIX_HEADER = ("| budget | run's n-gram | model | model + n-gram | model --adapt | "
              "both |\n|---:|---:|---:|---:|---:|---:|")


def mix_lines(rows):
    """The issue's table of what a run gives: the model alone, its n-gram, their mixture,
    the adapted model and the adapted mixture; the best of each row in bold."""
    lines = [MIX_HEADER]
    for r in rows:
        figures = [r["ngram_run"], r["model"], r["mix"], r["adapt"], r["both"]]
        best = min(figures)
        cells = [f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in figures]
        lines.append(f"| {r['budget']:g} s | " + " | ".join(cells) + " |")
    return lines


def run_torch(corpus, budget, info):
    """The same model size, optimizer, schedule, batch and budget in PyTorch."""
    import torch
    from _torch_ref import TorchTrainer, from_params

    from charlm.data import text as data
    from charlm.nn import inference, model
    from charlm.nn.model import ModelConfig

    torch.set_num_threads(os.cpu_count() or 1)
    m, t = info["model"], info["train"]
    cfg = ModelConfig(cell=m["cell"], vocab_size=m["vocab_size"], hidden=m["hidden"],
                      layers=m["layers"], activation=m["activation"])
    read = data.read_corpus([corpus])
    train_ids, val_ids = data.split_train_val(read.ids, t["val_frac"])
    _, params = model.init_params(cfg, np.random.default_rng(t["seed"]))
    trainer = TorchTrainer(from_params(params, cfg), cfg, train_ids, t["batch_size"],
                           t["seq_len"], lr=t["lr"], clip_norm=t["clip_norm"])
    if m["dropout"]:
        trainer.model.rnn.dropout = m["dropout"]

    def validate(streams):
        trained = {k: v.detach().numpy() for k, v in trainer.model.state_dict().items()}
        nll, count = inference.score_ids(trained, cfg, val_ids, streams=streams)
        return nll / count

    trainer.model.train()
    curve = train_for(trainer, t, budget, CURVE_EVERY, lambda: validate(16))
    return curve, validate(1), validate(16)


def train_for(trainer, t, budget, every, validate, at_end=False):
    """Train for `budget` seconds of the trainer's own steps under charlm's learning-rate
    schedule (t: the run's train section); [(seconds, validate())] every `every` seconds (and
    at the end with at_end), validation not counted."""
    from charlm.nn import optim

    curve, trained_for, next_eval = [], 0.0, every
    while trained_for < budget:
        factor = optim.schedule_factor(t["lr_schedule"], trained_for / budget, t["warmup"])
        for group in trainer.opt.param_groups:
            group["lr"] = t["lr"] * factor
        started = time.perf_counter()
        trainer.train_step()
        trained_for += time.perf_counter() - started
        if trained_for >= next_eval or (at_end and trained_for >= budget):
            curve.append((trained_for, validate()))
            next_eval += every
    return curve


def run_torch_large_vocab(corpus, budget, info, evals=None):
    """nn.Embedding + the chosen cell and size + nn.Linear, PyTorch's initialisation, charlm's
    recipe, trained for `budget` seconds of its own steps; validated `evals` times (one stream,
    full pass, not counted in the budget). Returns (curve, best val, last val)."""
    import torch
    from _torch_ref import TorchLargeVocabLM, TorchLargeVocabTrainer

    from charlm.data import text as data
    from charlm.nn.model import ModelConfig

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    m, t = info["model"], info["train"]
    cfg = ModelConfig(cell=m["cell"], vocab_size=m["vocab_size"], hidden=m["hidden"],
                      layers=m["layers"], activation=m["activation"], embed=m["embed"] or 64)
    read = data.read_corpus([corpus])
    train_ids, val_ids = data.split_train_val(read.ids, t["val_frac"])
    evals = evals or (20 if len(val_ids) < 50_000 else 4)      # a full one-stream pass each
    model = TorchLargeVocabLM(cfg, dropout=m["dropout"])
    trainer = TorchLargeVocabTrainer(model, cfg, train_ids, t["batch_size"], t["seq_len"],
                                     lr=t["lr"], clip_norm=t["clip_norm"])
    curve = train_for(trainer, t, budget, budget / evals, lambda: trainer.validate(val_ids),
                      at_end=True)
    return curve, min(v for _, v in curve), curve[-1][1]


def best_ngram(corpus, workdir, orders=range(2, 8)):
    """(order, val nats) of the Kneser-Ney order that scores validation best."""
    scores = {order: run_ngram(corpus, workdir, order) for order in orders}
    order = min(scores, key=scores.get)
    return order, scores[order]


def run_ngram(corpus, workdir, order=6):
    out = workdir / f"ngram-{order}"
    subprocess.run([*CHARLM, "train", str(corpus), "--cell", "ngram", "--order", str(order),
                    "--out", str(out), "--force"], check=True, capture_output=True)
    return charlm_json("eval", "perplexity", out / "best.npz", "--corpus", corpus, "--split",
                       "val", "--json")["nats_per_char"]


def sample_text(checkpoint, length=500, prime="ROMEO:"):
    out = subprocess.run([*CHARLM, "sample", str(checkpoint), "--prime", prime, "--length",
                          str(length), "--seed", "1", "--unknown", "skip"],
                         check=True, capture_output=True, text=True)
    return out.stdout


def svg_curves(series, path, title):
    """A small line chart, written by hand: series is {label: [(seconds, nats), ...]}."""
    width, height, pad = 720, 420, 60
    points = [p for curve in series.values() for p in curve]
    x_max = max(p[0] for p in points) * 1.05
    y_min = min(p[1] for p in points) - 0.05
    y_max = min(max(p[1] for p in points), 3.5) + 0.05

    def xy(t, v):
        v = min(v, y_max)
        return (pad + (width - 2 * pad) * t / x_max,
                height - pad - (height - 2 * pad) * (v - y_min) / (y_max - y_min))

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
             'stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">'
             'training seconds</text>',
             f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" '
             'text-anchor="middle">validation nats/char</text>']
    for k in range(6):
        v = y_min + (y_max - y_min) * k / 5
        _, y = xy(0, v)
        parts.append(f'<text x="{pad - 5}" y="{y + 4}" text-anchor="end">{v:.2f}</text>')
        t = x_max * k / 5
        x, _ = xy(t, y_min)
        parts.append(f'<text x="{x}" y="{height - pad + 15}" text-anchor="middle">{t:.0f}</text>')
    for i, (label, curve) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        if len(curve) == 1 and curve[0][0] == 0:           # a constant: the n-gram baseline
            _, y = xy(0, curve[0][1])
            parts.append(f'<line x1="{pad}" y1="{y}" x2="{width - pad}" y2="{y}" '
                         f'stroke="{colour}" stroke-dasharray="6 4"/>')
        else:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in curve))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{coords}"/>')
        parts.append(f'<text x="{width - pad - 150}" y="{pad + 16 * i}" fill="{colour}">'
                     f'{label}</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,120,300,600")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-max-budget", type=float, default=math.inf,
                        help="skip the PyTorch run for budgets above this (to save time)")
    args = parser.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"error: corpus {args.corpus} not found; pass --corpus FILE")
    budgets = [float(b) for b in args.budgets.split(",")]
    try:
        import torch  # noqa: F401
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False

    from charlm.data import text as data
    from charlm.train.config import ADAPTIVE_FROM

    if data.read_corpus([args.corpus]).vocab.size >= ADAPTIVE_FROM:
        return main_large_vocab(args, budgets, have_torch)
    rows, series, samples = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ngram = run_ngram(args.corpus, workdir)
        print(f"6-gram Kneser-Ney: {ngram:.4f}", flush=True)
        for budget in budgets:
            curve, final, ckpt, info, wall = run_charlm(args.corpus, budget, workdir)
            m = info["model"]
            size = f"{m['layers']}x{m['hidden']} {m['cell'].upper()}, dropout {m['dropout']:g}"
            series[f"charlm {budget:g} s"] = curve
            samples[budget] = sample_text(ckpt)
            row = {"budget": budget, "charlm": final, "size": size, "wall": wall,
                   "steps": info["step"], "ngram": ngram}
            row.update(renamed(run_columns(ckpt.parent, args.corpus, model=final)))
            print(f"{budget:g} s: charlm {final:.4f} ({size}, {info['step']} steps, "
                  f"{wall:.0f} s wall)", flush=True)
            if have_torch and budget <= args.torch_max_budget:
                torch_curve, torch_final, torch_16 = run_torch(args.corpus, budget, info)
                row["torch"], row["torch16"] = torch_final, torch_16
                series[f"PyTorch {budget:g} s"] = torch_curve
                print(f"{budget:g} s: PyTorch {torch_final:.4f} (16 streams {torch_16:.4f})",
                      flush=True)
            rows.append(row)
    series["6-gram KN"] = [(0, ngram)]
    svg_curves(series, REPO / "benchmarks" / "quality.svg",
               "tiny Shakespeare: validation loss against training time")
    write_markdown(rows, samples, args.corpus, have_torch)


def main_large_vocab(args, budgets, have_torch):
    """charlm's defaults, the PyTorch tutorial model of the same size and the best n-gram on a
    large-vocabulary corpus; writes benchmarks/QUALITY-<corpus>.md and its curves."""
    rows, series, samples = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        order, ngram = best_ngram(args.corpus, workdir)
        print(f"best Kneser-Ney: order {order}, {ngram:.4f}", flush=True)
        for budget in budgets:
            curve, final, ckpt, info, wall = run_charlm(args.corpus, budget, workdir)
            size = describe(info)
            series[f"charlm {budget:g} s"] = curve
            samples[budget] = sample_text(ckpt, 200, prime="")
            row = {"budget": budget, "charlm": final, "size": size, "steps": info["step"],
                   "ngram": ngram, "order": order}
            streams = 1 if info["data"]["val_chars"] < 100_000 else 16
            model = final if streams == 1 else None               # final is one stream's
            row.update(renamed(run_columns(ckpt.parent, args.corpus, streams, model)),
                       streams=streams)
            print(f"{budget:g} s: charlm {final:.4f} ({size}, {info['step']} steps, "
                  f"{wall:.0f} s wall)", flush=True)
            if have_torch and budget <= args.torch_max_budget:
                torch_curve, best, last = run_torch_large_vocab(args.corpus, budget, info)
                row["torch"], row["torch_last"] = best, last
                series[f"PyTorch {budget:g} s"] = torch_curve
                print(f"{budget:g} s: PyTorch best {best:.4f}, last {last:.4f}", flush=True)
            rows.append(row)
    name = args.corpus.stem
    series[f"{order}-gram KN"] = [(0, ngram)]
    svg_curves(series, REPO / "benchmarks" / f"quality-{name}.svg",
               f"{name}: validation loss against training time")
    lines = [
        f"# Quality per CPU-minute: {name}", "",
        f"Generated by `benchmarks/quality.py --corpus {args.corpus.name}` on "
        f"{date.today().isoformat()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, numpy {np.__version__} (last 10% validation, full pass from "
        "the zero state, one stream, nats/char; lower is better).", "",
        "charlm runs `charlm train CORPUS --time-budget B` with no other options (its budget "
        "covers its validations, n-gram and mixture). PyTorch trains the model of the Chinese "
        "char-RNN tutorials, "
        "`nn.Embedding` + the cell and size charlm chose + `nn.Linear` and a full softmax, with "
        "PyTorch's initialisation and charlm's dropout, Adam, schedule, batch, unroll and "
        "clipping, for the same training time (validation not counted); best of 20 validations "
        "over the run (4 on a long validation split), and its last. The Kneser-Ney order is "
        "the best on validation (2 to 7).",
        "", "| budget | charlm defaults | model chosen | best.npz at step | PyTorch embedding + "
        "full softmax "
        "(best / last) | best Kneser-Ney |", "|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        torch_cell = f"{r['torch']:.4f} / {r['torch_last']:.4f}" if "torch" in r else "-"
        lines.append(f"| {r['budget']:g} s | {r['charlm']:.4f} | {r['size']} | {r['steps']:,} | "
                     f"{torch_cell} | {r['ngram']:.4f} ({r['order']}-gram) |")
    streams = sorted({r["streams"] for r in rows})
    lines += ["", "What each run leaves a user beyond best.npz: its own n-gram (`ngram.npz`, "
              "order chosen on the training split), "
              "the model, their mixture (`mix.npz`), the model with `--adapt` and the mixture "
              f"with `--adapt`, default settings, {' or '.join(map(str, streams))} "
              "stream(s) (16 on a validation split of 100,000 characters or more, to keep "
              "`--adapt`'s one pass per stream within minutes):", "", *mix_lines(rows),
              "", f"![learning curves](quality-{name}.svg)", ""]
    for budget, text in samples.items():
        lines += [f"## 200 characters from the {budget:g} s model (seed 1)", "", "```",
                  text.rstrip("\n"), "```", ""]
    (REPO / "benchmarks" / f"QUALITY-{name}.md").write_text("\n".join(lines))
    print(f"wrote benchmarks/QUALITY-{name}.md")


def renamed(columns):
    """run_columns's n-gram is the run's own (order chosen on the training split)."""
    return {("ngram_run" if k == "ngram" else k): v for k, v in columns.items()}


def describe(info):
    m = info["model"]
    parts = [f"{m['layers']}x{m['hidden']} {m['cell'].upper()}"]
    if m.get("embed"):
        parts.append(f"embedding {m['embed']}")
    if m.get("softmax") == "adaptive":
        parts.append("adaptive softmax")
    parts.append(f"dropout {m['dropout']:g}")
    return ", ".join(parts)


def write_markdown(rows, samples, corpus, have_torch):
    lines = [
        "# Quality per CPU-minute",
        "",
        f"Generated by `benchmarks/quality.py` on {date.today().isoformat()}: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, corpus `{corpus.name}` (last 10% validation, full pass from "
        "the zero state, nats/char; lower is better).",
        "",
        "charlm runs `charlm train CORPUS --time-budget B` with no other options (its budget "
        "covers its validations, n-gram and mixture). PyTorch trains the cell and size charlm "
        "chose (`torch.nn.GRU/LSTM` + `nn.Linear`) with the same Adam, schedule, batch, unroll "
        "and clipping for the same wall-clock time."
        if have_torch else "PyTorch was not installed for this run.",
        "",
        "| budget | charlm defaults | model chosen | best.npz at step | PyTorch, same size "
        "(1 stream / 16 streams) | 6-gram KN |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        torch_cell = f"{r['torch']:.4f} / {r['torch16']:.4f}" if "torch" in r else "-"
        lines.append(f"| {r['budget']:g} s | {r['charlm']:.4f} | {r['size']} | {r['steps']:,} | "
                     f"{torch_cell} | {r['ngram']:.4f} |")
    lines += ["", "The PyTorch script trains with the state carried from step to step and never "
              "restarted, as PyTorch examples do; scored from fresh zero states, such a model's "
              "figure can swing with where the pieces start (1 stream against 16), which is "
              "why charlm restarts a stream's state now and then (`--state-reset`).",
              "", "Anchors on the same split (from the project's research, same kind of machine): "
              "PyTorch LSTM 2x256, batch 32, unroll 64, Adam 2e-3: 1.80 at 120 s, 1.573 at 300 s; "
              "nanoGPT's CPU baby GPT: 1.905 after 101 s, 1.646 at 300 s.", "",
              "What each run leaves a user beyond best.npz: its own n-gram (`ngram.npz`, order "
              "chosen on the training split), the model, their mixture (`mix.npz`), the model "
              "with `--adapt` and the mixture with `--adapt` (default settings, one stream):",
              "", *mix_lines(rows), "", "![learning curves](quality.svg)", ""]
    if samples:
        budget = max(samples)
        lines += [f"## A 500-character sample from the {budget:g} s model", "", "```",
                  samples[budget].rstrip("\n"), "```", ""]
    (REPO / "benchmarks" / "QUALITY.md").write_text("\n".join(lines))
    print("wrote benchmarks/QUALITY.md and benchmarks/quality.svg")


if __name__ == "__main__":
    main()
