"""Cloze accuracy: the bidirectional model against a left-to-right one of the same size and
training time, left context only and rescored.

For each corpus (a 90/10 tail split, as `charlm train` makes it):
  * `charlm train CORPUS --bidirectional` and `charlm train CORPUS` with the same cell, layers,
    hidden size (and, for a large vocabulary, the embedding and adaptive softmax charlm
    chooses) and the same --time-budget (subprocesses, exactly what a user runs);
  * `charlm eval cloze` on the first --chars characters of the validation split: the
    bidirectional model's cloze pass, the left-to-right model from its left context, and the
    left-to-right model with --rescore (every candidate of a blank scored as a stream over
    --window characters either side), on the same seeded blanks.
Reports mean nats, top-1 and top-5 of the blanked characters and the seconds each took; writes
benchmarks/CLOZE.md.

    python benchmarks/cloze.py [--budget 120] [--corpus PATH ...] [--chars 20000]
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
DEFAULT = [CORPORA / "tinyshakespeare.txt", CORPORA / "zh-tang-song.txt"]


def charlm(*args):
    done = subprocess.run([sys.executable, "-m", "charlm", *map(str, args)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"charlm {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def validation_text(corpus, chars, out):
    text = corpus.read_text(encoding="utf-8")
    val = text[len(text) - round(0.1 * len(text)):]     # charlm's tail split at --val-frac 0.1
    out.write_text(val[:chars], encoding="utf-8")
    return out


def run_corpus(corpus, args, tmp):
    size = ["--cell", "gru", "--layers", str(args.layers), "--hidden", str(args.hidden),
            "--dropout", str(args.dropout)]
    runs = {}
    for name, extra in (("bidirectional", ["--bidirectional"]), ("left-to-right", [])):
        out = tmp / f"{corpus.stem}-{name}"
        charlm("train", corpus, *size, *extra, "--time-budget", args.budget, "--out", out,
               "--quiet")
        runs[name] = out / "best.npz"
    text = validation_text(corpus, args.chars, tmp / f"{corpus.stem}-val.txt")
    rows = []
    for fraction in (args.fraction, args.rescore_fraction):
        common = ["--fraction", fraction, "--seed", 0, "--unknown", "skip", "--json"]
        rows += json.loads(charlm("eval", "cloze", runs["bidirectional"], text, "--compare",
                                  runs["left-to-right"], *common))
    rows += json.loads(charlm("eval", "cloze", runs["left-to-right"], text, "--rescore",
                              "--window", args.window, *common))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, nargs="*", default=DEFAULT)
    parser.add_argument("--budget", type=float, default=120)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--chars", type=int, default=20000)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--rescore-fraction", type=float, default=0.005,
                        help="rescoring costs V texts per blank: fewer blanks")
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args()
    lines = [f"# Cloze: bidirectional against left-to-right ({date.today()}, "
             f"{platform.processor() or platform.machine()})", "",
             f"`python benchmarks/cloze.py --budget {args.budget:g}`: 2 models per corpus, "
             f"{args.layers}x{args.hidden} GRU, dropout {args.dropout:g}, {args.budget:g} s of "
             "training each; blanks "
             f"from the first {args.chars:,} characters of the validation split (seed 0); "
             f"first {args.fraction:g} of the characters blanked, then, on fewer blanks (a "
             f"{args.rescore_fraction:g} share: rescoring scores every candidate of each), all "
             f"three methods on the same blanks, rescoring over {args.window} characters either "
             "side.", "",
             "| corpus | model | method | blanks | nats | top-1 | top-5 | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in args.corpus:
            if not corpus.is_file():
                print(f"skipping {corpus}: not present")
                continue
            for r in run_corpus(corpus, args, Path(tmp)):
                lines.append(f"| {corpus.name} | {r['model']} | {r['method']} | {r['blanks']:,} "
                             f"| {r['nats']:.3f} | {r['top1']:.3f} | {r['top5']:.3f} "
                             f"| {r['seconds']:.1f} |")
                print(lines[-1], flush=True)
    (REPO / "benchmarks" / "CLOZE.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
