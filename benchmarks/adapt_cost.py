"""What `eval perplexity --adapt` costs against a static scoring pass, at one stream.

For each checkpoint: the last --chars characters of its text (default tiny Shakespeare; give
another as PATH:TEXT) are scored statically (charlm.nn.inference.score_ids, chunks of 256) and
with dynamic evaluation at the default settings (segments of 256), the two interleaved --reps
times; CPU seconds (process time, steadier than wall time on a shared machine), medians, and
their ratio. Run it with one BLAS thread (OPENBLAS_NUM_THREADS=1), as a single stream scores.

    OPENBLAS_NUM_THREADS=1 python benchmarks/adapt_cost.py RUN/best.npz [PATH:TEXT ...]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from charlm import lm
from charlm.lm import adapt
from charlm.nn.inference import score_ids

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"


def cpu_seconds(fn, *args):
    started = time.process_time()
    fn(*args)
    return time.process_time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="CHECKPOINT or CHECKPOINT:TEXT")
    parser.add_argument("--chars", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for spec in args.models:
        path, _, text_path = spec.partition(":")
        m = lm.load(path)
        text = Path(text_path or DEFAULT_TEXT).read_text(encoding="utf-8")[-args.chars - 1:]
        ids = m.vocab.encode(text, unknown="skip")[0]
        rms = m.adapt_rms if getattr(m, "adapt_rms", None) is not None \
            else np.ones(m.parameters, np.float32)
        adapted = adapt.AdaptedLM(m, adapt.Settings(), rms)
        static, dynamic = [], []
        for _ in range(args.reps):
            static.append(cpu_seconds(score_ids, m.params, m.model_config, ids, 1, 256))
            dynamic.append(cpu_seconds(adapted.log_probs, ids))
        s, d = statistics.median(static), statistics.median(dynamic)
        print(f"{m.describe()}: static {s:.3f} s, --adapt {d:.3f} s, {d / s:.2f}x", flush=True)


if __name__ == "__main__":
    main()
