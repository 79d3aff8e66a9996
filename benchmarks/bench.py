"""Speed, start-up and memory of charlm next to the same jobs in PyTorch, in one run.

    .venv/bin/python benchmarks/bench.py [--corpus PATH] [--quick]
                                         [--configs 1x128,2x256,2x512] [--cells rnn,gru,lstm]

Every comparison alternates the two libraries in the same process (charlm block, PyTorch
block, charlm block, ...) and reports per-unit medians and the ratio charlm / PyTorch, so
that load from other processes hits both sides alike. PyTorch uses as many threads as the
BLAS behind numpy. Without torch installed the script still reports charlm's own figures.
Prints a table and writes benchmarks/RESULTS.md (see benchmarks/README.md for the figures).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import gc
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from charlm.data import text as data
from charlm.lm.sampling import generate
from charlm.nn import inference
from charlm.nn.cells import CELLS as CELL_MODULES
from charlm.nn.inference import Stepper
from charlm.train.config import TrainConfig
from charlm.train.trainer import Trainer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
RESULTS = HERE / "RESULTS.md"

# name -> (layers, hidden, batch, seq_len)
CONFIGS = {"1x128": (1, 128, 32, 64), "2x256": (2, 256, 64, 64), "2x512": (2, 512, 64, 128)}
CELLS = ("rnn", "gru", "lstm")
QUICK_CONFIGS = ("1x128", "2x256")

TRAIN_TARGETS = {"1x128": 0.6, "2x256": 0.8, "2x512": 1.0}   # charlm / PyTorch, at least
SAMPLE_TARGET = 3.0
EVAL_TARGET = 1.0
HELP_TARGET_S = 0.3
MEM_MARGIN = 300 * 2**20                                        # bytes above the corpus size

SAMPLE_LEN = 2000
EVAL_S1_CHARS = 20_000
CHUNK_LEN = 256
VAL_FRAC = 0.1
BIG_CORPUS_BYTES = 200 * 10**6
GEMM_N = 2048

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@dataclass
class Plan:
    """Timed units per side: `rounds` rounds of `per_round` charlm units then `per_round`
    PyTorch units, after `warmup` untimed units per side (alternating too)."""

    warmup: int
    rounds: int
    per_round: int

    @property
    def n(self):
        return self.rounds * self.per_round


# A training unit is one step. A sampling unit is one 2,000-character generation and an
# evaluation unit one whole pass, each already thousands of steady-state steps long, so fewer
# units are timed; an evaluation warms up on a short prefix instead of a whole pass.
FULL_PLANS = {"train": Plan(2, 5, 4), "sample": Plan(1, 5, 1), "eval": Plan(1, 3, 1)}
QUICK_PLANS = {"train": Plan(1, 3, 2), "sample": Plan(1, 3, 1), "eval": Plan(1, 2, 1)}
EVAL_WARMUP_CHARS = 4096


@dataclass
class Figure:
    """One figure for both sides: per-unit seconds and the characters in one unit."""

    chars: int
    a: list[float] = field(default_factory=list)        # charlm
    b: list[float] = field(default_factory=list)        # PyTorch
    round_ratios: list[float] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)     # GEMM seconds, one per round
    other_load: float | None = None                      # see LoadMeter
    products_s: float | None = None     # evaluation: seconds per unit of the matrix products alone

    @property
    def rate_a(self):
        return self.chars / statistics.median(self.a) if self.a else None

    @property
    def rate_b(self):
        return self.chars / statistics.median(self.b) if self.b else None

    @property
    def ratio(self):
        return self.rate_a / self.rate_b if self.a and self.b else None

    @property
    def products_bound(self):
        """The ratio charlm would reach if everything but its matrix products took no time."""
        if self.products_s is None or not self.b:
            return None
        return self.chars / self.products_s / self.rate_b


@dataclass
class Row:
    config: str
    cell: str
    flops_per_char: int                        # forward FLOPs per character, counted weights
    train: Figure | None = None
    sample: Figure | None = None
    eval1: Figure | None = None
    eval16: Figure | None = None
    loss_check: tuple[float, float] | None = None      # first-step loss, charlm and PyTorch
    eval_check: tuple[float, float] | None = None      # streams-1 nats/char, charlm and PyTorch

    @property
    def peak(self):
        """GEMM GFLOP/s measured between this row's training rounds."""
        return gflops(statistics.median(self.train.probe))

    def train_gflops(self, side="a"):
        rate = self.train.rate_a if side == "a" else self.train.rate_b
        return None if rate is None else 3 * self.flops_per_char * rate / 1e9


# ---- the machine ----------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openblas_lib():
    """numpy's loaded OpenBLAS, found in /proc/self/maps, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(p for p in paths if ".so" in p):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_call(lib, names, restype):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            return fn()
    return None


def blas_threads():
    """(threads numpy's BLAS uses, how we know)."""
    try:
        from threadpoolctl import threadpool_info
        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            return int(infos[0]["num_threads"]), "threadpoolctl"
    except ImportError:
        pass
    lib = _openblas_lib()
    if lib is not None:
        n = _openblas_call(lib, ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                                 "openblas_get_num_threads"), ctypes.c_int)
        if n:
            return int(n), "from OpenBLAS's get_num_threads; threadpoolctl is not installed"
    return os.cpu_count() or 1, "os.cpu_count(); threadpoolctl is not installed"


def blas_description():
    parts = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        parts.append(f"{blas.get('name')} {blas.get('version')}")
    except Exception:                          # older numpy: no dict mode
        parts.append("unknown BLAS")
    lib = _openblas_lib()
    if lib is not None:
        core = _openblas_call(lib, ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                                    "openblas_get_corename"), ctypes.c_char_p)
        if core:
            parts.append(f"core {core.decode()}")
    return ", ".join(parts)


def machine_info(torch, threads, thread_source):
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "blas": blas_description(),
        "threads": f"{threads} BLAS threads ({thread_source}); "
                   + (f"torch.set_num_threads({threads})" if torch else "PyTorch not installed"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else "not installed",
        "os": platform.platform(),
    }


# ---- timing ---------------------------------------------------------------------------------

class LoadMeter:
    """CPU time that other processes (and the hypervisor, as steal) took while it ran, as a
    fraction of all cores: 0 on an idle machine, 0.5 when others used half of it."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        busy = sum(fields[:3]) + sum(fields[5:8])
        own = os.times()
        return (busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user
                + own.children_system, time.perf_counter())

    def fraction(self):
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        cores = os.cpu_count() or 1
        return min(max((busy - own) / (cores * wall), 0.0), 1.0) if wall > 0 else None


def interleave(fig, run_a, run_b, plan, label, warm_a=None, warm_b=None, probe=None):
    """Alternate blocks of run_a (charlm) and run_b (PyTorch, may be None); fill fig.

    warm_a / warm_b replace the units in the warm-up; probe, if given, runs once after every
    round (the GEMM peak, so that it sees the same machine load as the steps).
    """
    for _ in range(plan.warmup):
        (warm_a or run_a)()
        if run_b is not None:
            (warm_b or run_b)()
    meter = LoadMeter()
    for _ in range(plan.rounds):
        block_a, block_b = [], []
        for _ in range(plan.per_round):
            t = time.perf_counter()
            run_a()
            block_a.append(time.perf_counter() - t)
        if run_b is not None:
            for _ in range(plan.per_round):
                t = time.perf_counter()
                run_b()
                block_b.append(time.perf_counter() - t)
            fig.round_ratios.append(statistics.median(block_b) / statistics.median(block_a))
        fig.a += block_a
        fig.b += block_b
        if probe is not None:
            fig.probe.append(probe())
    fig.other_load = meter.fraction()
    ratio = f", ratio {fig.ratio:.2f}" if fig.ratio else ""
    torch_part = f", torch {fig.rate_b:,.0f}" if fig.b else ""
    console.print(f"  {label}: charlm {fig.rate_a:,.0f} chars/s{torch_part}{ratio}"
                  f"  [dim](n={len(fig.a)}, other load {fmt_load(fig.other_load)})[/dim]")
    return fig


class Gemm:
    """A GEMM_N^3 float32 matmul; calling it returns its seconds."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
        self.b = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
        self.out = np.empty_like(self.a)
        self()

    def __call__(self):
        t = time.perf_counter()
        np.matmul(self.a, self.b, out=self.out)
        return time.perf_counter() - t


def gflops(seconds):
    return 2 * GEMM_N**3 / seconds / 1e9


def flops_per_char(cell, layers, hidden, vocab):
    """Forward FLOPs per character: 2 per multiplied weight of W_hh (every layer), W_ih
    (layers >= 1) and the head. Layer 0's W_ih is a row gather of a one-hot input: not counted."""
    G = CELL_MODULES[cell].GATES
    weights = layers * G * hidden * hidden + (layers - 1) * G * hidden * hidden + vocab * hidden
    return 2 * weights


def scoring_products_seconds(params, mcfg, streams, steps, reps=5):
    """Seconds that charlm's scoring spends in matrix products alone for `steps` time steps
    of `streams` streams: per layer the recurrent product of every step, the input projection
    of each layer above the first, and the head; the same folded arrays, memory orders and
    calls as charlm.nn.inference.infer (median of reps chunks of CHUNK_LEN steps, scaled to steps).
    A lower bound on any numpy scoring pass: the elementwise work, the first layer's gather
    and the loss come on top."""
    S, T, H = streams, CHUNK_LEN, mcfg.hidden
    dt = params["head.weight"].dtype
    folded = inference.fold_for_inference(params, mcfg, S)
    rng = np.random.default_rng(0)
    inp = rng.standard_normal((T, H, S)).astype(dt) * 0.1
    h = np.ascontiguousarray(inp[0, :, 0]) if S == 1 else np.ascontiguousarray(inp[0])
    head_w = params["head.weight"]
    top = np.ascontiguousarray(inp.transpose(0, 2, 1).reshape(T * S, H))
    logits = np.empty((T * S, head_w.shape[0]), dt)
    G = folded[0][2].shape[0]
    gates = np.empty((G,) if S == 1 else (G, S), dt)
    projected = np.empty((T, G) if S == 1 else (T, G, S), dt)    # memory touched once, before
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        for k, (w_in, _, w_hh, _) in enumerate(folded):
            for _ in range(T):
                if S == 1:
                    np.dot(h, w_hh.T, out=gates)     # the kernel follows w_hh's memory order
                else:
                    np.dot(w_hh, h, out=gates)
            if k > 0:
                if S == 1:
                    np.matmul(inp.reshape(T, H), w_in.T, out=projected)
                else:
                    np.matmul(w_in, inp, out=projected)
        np.matmul(top, head_w.T, out=logits)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) * steps / T


# ---- one configuration ----------------------------------------------------------------------

def bench_config(name, cell, corpus, train_ids, val_ids, plans, torch, ref, workdir, gemm):
    L, H, B, T = CONFIGS[name]
    V = corpus.vocab.size
    row = Row(name, cell, flops_per_char(cell, L, H, V))
    console.print(f"[bold]{name} {cell}[/bold]  (layers {L}, hidden {H}, batch {B}, seq {T})")
    tcfg = TrainConfig(cell=cell, layers=L, hidden=H, batch_size=B, seq_len=T, lr=2e-3,
                       optimizer="adam", lr_schedule="constant", clip_norm=5.0, steps=10**9,
                       val_frac=VAL_FRAC)
    trainer = Trainer(tcfg, corpus.vocab, train_ids, val_ids, out_dir=workdir, data_info={})

    # -- training: the same step the CLI runs, against the same job in PyTorch --------------
    losses_a, losses_b = [], []

    def train_a():
        losses_a.append(trainer.train_step()[0])

    train_b = None
    if torch is not None:
        tt = ref.TorchTrainer(ref.from_params(trainer.params, trainer.mcfg), trainer.mcfg,
                              train_ids, B, T, lr=tcfg.lr, clip_norm=tcfg.clip_norm)

        def train_b():
            losses_b.append(tt.train_step())

    row.train = interleave(Figure(B * T), train_a, train_b, plans["train"], "train",
                           probe=gemm)
    if losses_b:
        row.loss_check = (losses_a[0], losses_b[0])

    # -- sampling at batch 1 ----------------------------------------------------------------
    params, mcfg = trainer.params, trainer.mcfg
    prime = corpus.vocab.index("\n")
    prime = 0 if prime is None else prime
    stepper = Stepper(params, mcfg)
    rng = np.random.default_rng(0)

    def sample_a():
        stepper.reset()
        for _ in generate(stepper, [prime], SAMPLE_LEN, rng, 1.0):
            pass

    sample_b = None
    if torch is not None:
        torch_model = ref.from_params(params, mcfg).eval()
        torch.manual_seed(0)

        def sample_b():
            ref.sample(torch_model, prime, SAMPLE_LEN, 1.0)

    row.sample = interleave(Figure(SAMPLE_LEN), sample_a, sample_b, plans["sample"], "sample")

    # -- evaluation at streams 1 (first EVAL_S1_CHARS of val) and 16 (all of val) ----------
    for attr, ids, streams in (("eval1", val_ids[:EVAL_S1_CHARS], 1), ("eval16", val_ids, 16)):
        nll = {}

        def eval_a(ids=ids, streams=streams, nll=nll):
            nll["a"] = inference.score_ids(params, mcfg, ids, streams=streams, chunk_len=CHUNK_LEN)

        warm = ids[:EVAL_WARMUP_CHARS]
        warm_a = functools.partial(eval_a, warm)
        eval_b = warm_b = None
        if torch is not None:
            def eval_b(ids=ids, streams=streams, nll=nll):
                nll["b"] = ref.score_ids(torch_model, mcfg, ids, streams=streams,
                                         chunk_len=CHUNK_LEN)

            warm_b = functools.partial(eval_b, warm)

        fig = interleave(Figure(len(ids) - 1), eval_a, eval_b, plans["eval"],
                         f"eval streams {streams}", warm_a, warm_b)
        fig.products_s = scoring_products_seconds(params, mcfg, streams,
                                                  math.ceil((len(ids) - 1) / streams))
        setattr(row, attr, fig)
        if streams == 1 and "b" in nll:
            row.eval_check = (nll["a"][0] / nll["a"][1], nll["b"][0] / nll["b"][1])
    return row


# ---- start-up and memory --------------------------------------------------------------------

def charlm_bin():
    for cand in (ROOT / ".venv" / "bin" / "charlm", Path(sys.executable).parent / "charlm"):
        if cand.exists():
            return str(cand)
    found = shutil.which("charlm")
    if found is None:
        raise SystemExit("cannot find the charlm command; run `make install` first")
    return found


def time_command(argv, runs=5):
    """Median wall seconds of `runs` runs after one untimed run (warms the page cache)."""
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bench_startup(corpus_path, workdir):
    exe = charlm_bin()
    small = Path(workdir) / "small.txt"
    text = Path(corpus_path).read_text(encoding="utf-8")
    small.write_text(text[:100_000], encoding="utf-8")
    out = Path(workdir) / "ckpt"
    subprocess.run([exe, "train", str(small), "--steps", "1", "--hidden", "32", "--layers", "1",
                    "--eval-chars", "1000", "--out", str(out), "--quiet"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    ckpt = out / "best.npz" if (out / "best.npz").exists() else out / "last.npz"
    results = {}
    for label, argv in (("python -c pass", [sys.executable, "-c", "pass"]),
                        ("charlm --help", [exe, "--help"]),
                        ("charlm sample CKPT --length 1", [exe, "sample", str(ckpt),
                                                           "--length", "1"])):
        results[label] = time_command(argv)
        console.print(f"  {label}: {results[label][0]:.3f} s")
    return results


# Runs argv[1:] and prints its ru_maxrss (KiB) and exit code. A tiny interpreter forks it:
# a child forked straight from this large process would count this process's resident pages
# in its ru_maxrss, because Linux keeps the high-water mark of the pre-exec address space.
SPAWN_AND_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def bench_memory(corpus_path, workdir, size=BIG_CORPUS_BYTES):
    """Peak RSS of `charlm train` on a synthetic corpus of about `size` bytes."""
    src = Path(corpus_path).read_bytes()
    big = Path(workdir) / "big.txt"
    with open(big, "wb") as f:
        for _ in range(math.ceil(size / len(src))):
            f.write(src)
    nbytes = big.stat().st_size
    argv = [charlm_bin(), "train", str(big), "--steps", "3", "--hidden", "64", "--layers", "1",
            "--eval-chars", "2000", "--out", str(Path(workdir) / "bigrun"), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", SPAWN_AND_MEASURE, *argv],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    big.unlink()
    try:
        maxrss_kib, rc = (int(v) for v in proc.stdout.split()[-2:])
    except ValueError:
        maxrss_kib, rc = 0, proc.returncode or 1
    if rc != 0:
        console.print(f"[red]charlm train on the big corpus failed:[/red] {proc.stderr[-500:]}")
    rss = maxrss_kib * 1024                                          # Linux reports KiB
    console.print(f"  charlm train on {nbytes / 1e6:.0f} MB: peak RSS {rss / 2**20:.0f} MiB, "
                  f"{seconds:.1f} s")
    return {"corpus_bytes": nbytes, "rss": rss, "seconds": seconds, "rc": rc,
            "argv": " ".join(["charlm"] + argv[1:2] + ["BIG"] + argv[3:-3] + ["--out", "TMP",
                                                                              "--quiet"])}


# ---- reporting ------------------------------------------------------------------------------

def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_load(x):
    return "?" if x is None else f"{100 * x:.0f}%"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def verdict(value, ok):
    if value is None:
        return "n/a (no PyTorch)"
    return "yes" if ok else "**no**"


def targets(rows, startup, memory):
    """(target, measured, holds) rows for the summary."""
    out = []
    for name, need in TRAIN_TARGETS.items():
        here = [r for r in rows if r.config == name and r.train]
        if not here:
            continue
        worst = min(here, key=lambda r: r.train.ratio or math.inf)
        v = worst.train.ratio
        out.append((f"training ratio ≥ {need} at {name}",
                    "—" if v is None else f"{v:.2f} (worst: {worst.cell})",
                    verdict(v, v is not None and v >= need)))
    for label, attr, need in (("sampling ratio", "sample", SAMPLE_TARGET),
                              ("eval ratio at streams 1", "eval1", EVAL_TARGET),
                              ("eval ratio at streams 16", "eval16", EVAL_TARGET)):
        here = [r for r in rows if getattr(r, attr)]
        if not here:
            continue
        worst = min(here, key=lambda r: getattr(r, attr).ratio or math.inf)
        v = getattr(worst, attr).ratio
        out.append((f"{label} ≥ {need} (every config and cell)",
                    "—" if v is None else f"{v:.2f} (worst: {worst.config} {worst.cell})",
                    verdict(v, v is not None and v >= need)))
    if startup:
        v = startup["charlm --help"][0]
        out.append((f"`charlm --help` < {HELP_TARGET_S} s", f"{v:.3f} s",
                    "yes" if v < HELP_TARGET_S else "**no**"))
    if memory:
        limit = memory["corpus_bytes"] + MEM_MARGIN
        ok = memory["rc"] == 0 and memory["rss"] < limit
        out.append(("`charlm train` peak RSS < corpus size + 300 MiB",
                    f"{memory['rss'] / 2**20:.0f} MiB (limit {limit / 2**20:.0f} MiB)",
                    "yes" if ok else "**no**"))
    return out


def terminal_table(rows):
    paired = any(r.train.b for r in rows)
    table = Table(title="charlm chars/s" + (" (ratio charlm / PyTorch)" if paired else ""))
    for col in ("config", "cell", "train", "sample (B=1)", "eval s1", "eval s16",
                "train GF/s (% peak)"):
        table.add_column(col, justify="left" if col in ("config", "cell") else "right")

    def cell_text(fig):
        if fig is None:
            return "—"
        ratio = fig.ratio
        text = fmt_rate(fig.rate_a)
        if ratio is None:
            return text
        colour = "green" if ratio >= 1 else "yellow" if ratio >= 0.6 else "red"
        return f"{text} [{colour}]({ratio:.2f}×)[/{colour}]"

    for r in rows:
        g = r.train_gflops()
        table.add_row(r.config, r.cell, cell_text(r.train), cell_text(r.sample),
                      cell_text(r.eval1), cell_text(r.eval16), f"{g:.1f} ({100 * g / r.peak:.0f}%)")
    return table


def markdown(args, info, rows, peak, startup, memory, run_seconds, plans, self_rss):
    peak_gflops = gflops(statistics.median(peak))
    has_torch = any(r.train and r.train.b for r in rows)
    cmd = "python benchmarks/bench.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    lines = [
        "# charlm next to PyTorch: speed, start-up and memory",
        "",
        f"Generated by `{cmd}` ({'quick' if args.quick else 'full'} run, "
        f"{run_seconds / 60:.1f} min); do not edit by hand. See benchmarks/README.md for what "
        "each figure means.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    for key in ("date", "cpu", "cores", "blas", "threads", "python", "numpy", "torch", "os"):
        lines.append(f"| {key} | {info[key]} |")
    lines.append(f"| float32 GEMM peak | {peak_gflops:.1f} GFLOP/s (numpy, {GEMM_N}³ matmul, "
                 f"median of {len(peak)} runs over the whole benchmark; "
                 f"{gflops(max(peak)):.1f} slowest, {gflops(min(peak)):.1f} fastest) |")
    lines.append(f"| corpus | {args.corpus} ({info['corpus_chars']:,} characters, V = "
                 f"{info['vocab']}; validation split = last {VAL_FRAC:.0%}, "
                 f"{info['val_chars']:,} characters) |")
    lines += ["", "## Targets", "", "| target | measured | holds |", "|---|---|---|"]
    for t, m, ok in targets(rows, startup, memory):
        lines.append(f"| {t} | {m} | {ok} |")
    if not has_torch:
        lines += ["", "PyTorch is not installed: only charlm's own figures are reported."]
    lines += [
        "",
        "Ratios are charlm chars/s divided by PyTorch chars/s (above 1: charlm is faster). "
        "Each side's rate is the median over its timed units; the two sides alternate in "
        "blocks (charlm, PyTorch, charlm, ...) after warm-up, so both see the same machine "
        "load. `round ratios` is the range of the per-round ratios, a gauge of the noise. "
        "`other load` is the CPU time other processes (and hypervisor steal) took during the "
        "timed rounds, as a share of all cores: where it is high the figures are unreliable, "
        f"and this whole run saw {fmt_load(info['other_load'])}.",
        "",
        "## Training",
        "",
        "One unit = one full step (batch gather, forward, loss, backward, global-norm clip 5, "
        "Adam lr 2e-3) of stateful truncated BPTT; chars/s = B·T / step time. FLOPs count "
        "2 per multiplied weight per character forward (W_hh of every layer, W_ih of layers "
        "≥ 1, the head; **not** layer 0's W_ih, which is a gather of a one-hot input), ×3 for "
        "training. `GEMM peak` is the median of the float32 GEMM runs timed between this "
        "row's training rounds, so that it saw the same machine load. `loss check`: the first "
        "step's loss in each library (same weights, same batch).",
        "",
        "| config (L×H, B, T) | cell | charlm chars/s | PyTorch chars/s | ratio | round ratios "
        "| target | charlm GFLOP/s | GEMM peak GFLOP/s | charlm % of peak | PyTorch % of peak "
        "| n | other load | loss check |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        f = r.train
        L, H, B, T = CONFIGS[r.config]
        ga, gb = r.train_gflops("a"), r.train_gflops("b")
        rr = (f"{min(f.round_ratios):.2f}–{max(f.round_ratios):.2f}"
              if f.round_ratios else "—")
        check = (f"{r.loss_check[0]:.5f} / {r.loss_check[1]:.5f}" if r.loss_check else "—")
        lines.append(
            f"| {L}×{H}, {B}, {T} | {r.cell} | {fmt_rate(f.rate_a)} | {fmt_rate(f.rate_b)} | "
            f"{fmt_ratio(f.ratio)} | {rr} | ≥ {TRAIN_TARGETS[r.config]} | {ga:.1f} | "
            f"{r.peak:.0f} | {100 * ga / r.peak:.1f}% | "
            f"{'—' if gb is None else f'{100 * gb / r.peak:.1f}%'} | {len(f.a)} | "
            f"{fmt_load(f.other_load)} | {check} |")
    lines += [
        "",
        "## Sampling (batch 1)",
        "",
        f"One unit = {SAMPLE_LEN:,} characters at temperature 1 from a zero state, each fed "
        "back in. charlm: `charlm.nn.inference.Stepper` + `charlm.lm.sampling.generate`; "
        "PyTorch: a loop calling the "
        "module on a (1, 1) input with the state, softmax, `torch.multinomial`, under "
        f"`torch.no_grad()`. Target: ratio ≥ {SAMPLE_TARGET}.",
        "",
        "| config | cell | charlm chars/s | PyTorch chars/s | ratio | round ratios | n "
        "| other load |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(_simple_row(r, r.sample) + f" {fmt_load(r.sample.other_load)} |")
    lines += [
        "",
        "## Evaluation",
        "",
        "Scoring a text (`charlm.nn.inference.score_ids`, the code of `charlm eval perplexity` and "
        "of validation): the predictions cut into S contiguous pieces, each from the zero "
        f"state, state carried over chunks of {CHUNK_LEN} steps. PyTorch scores the same "
        f"pieces, one module call per chunk, under `torch.no_grad()`. To keep the run short, "
        f"**streams 1 scores only the first {EVAL_S1_CHARS:,} characters of the validation "
        f"split; streams 16 scores all of it** ({info['val_chars']:,} characters). One unit = "
        "one whole pass; chars/s = predictions / pass time. `nats check`: streams-1 nats/char "
        f"in each library. Target: ratio ≥ {EVAL_TARGET} at both.",
        "",
        "`products bound` is the ratio charlm would reach if only its matrix products took "
        "time: the same pass's recurrent products, projections of the layers above the "
        "first and head, timed alone with charlm's own folded weights and calls "
        "(`scoring_products_seconds`), against PyTorch's whole pass. Below 1, no numpy "
        "scoring of that job can match PyTorch on this BLAS, whatever its elementwise work "
        "costs.",
        "",
        "| config | cell | S | charlm chars/s | PyTorch chars/s | ratio | round ratios | n "
        "| products bound | other load | nats check |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        for S, fig in ((1, r.eval1), (16, r.eval16)):
            check = (f"{r.eval_check[0]:.5f} / {r.eval_check[1]:.5f}"
                     if S == 1 and r.eval_check else "")
            lines.append(_simple_row(r, fig, f"{S} | ")
                         + f" {fmt_ratio(fig.products_bound)} | {fmt_load(fig.other_load)} "
                         f"| {check} |")
    lines += ["", "## Start-up", ""]
    if startup:
        lines += ["Wall time of a whole process, median of 5 runs after one untimed run. "
                  "The checkpoint is a 1-layer, hidden-32 LSTM trained for one step; "
                  "`python -c pass` is the bare interpreter, for scale.", "",
                  "| command | median s | runs s |", "|---|---:|---|"]
        for label, (med, times) in startup.items():
            lines.append(f"| `{label}` | {med:.3f} | {', '.join(f'{t:.3f}' for t in times)} |")
    else:
        lines.append("Skipped (--no-startup).")
    lines += ["", "## Memory", ""]
    if memory:
        lines += [
            f"- Peak RSS of `{memory['argv']}` on a synthetic corpus of "
            f"{memory['corpus_bytes'] / 1e6:.0f} MB (tinyshakespeare repeated): "
            f"**{memory['rss'] / 2**20:.0f} MiB** ({memory['seconds']:.1f} s, exit "
            f"{memory['rc']}); the target is below corpus size + 300 MiB = "
            f"{(memory['corpus_bytes'] + MEM_MARGIN) / 2**20:.0f} MiB.",
        ]
    else:
        lines.append("- The `charlm train` subprocess was skipped (--no-memory).")
    lines.append(f"- Peak RSS of this benchmark process (charlm, PyTorch and every "
                 f"configuration's arrays): {self_rss / 2**20:.0f} MiB.")
    pt, ps, pe = plans["train"], plans["sample"], plans["eval"]
    lines += [
        "",
        "## Method",
        "",
        f"- Units per side, charlm and PyTorch alternating: training {pt.warmup} warm-up "
        f"steps, then {pt.rounds} rounds of {pt.per_round} steps; sampling "
        f"{ps.warmup} warm-up generation, then {ps.rounds} rounds of {ps.per_round}; "
        f"evaluation {pe.warmup} warm-up pass over the first {EVAL_WARMUP_CHARS:,} characters, "
        f"then {pe.rounds} rounds of {pe.per_round} whole passes. A sampling unit "
        f"({SAMPLE_LEN:,} characters) and an evaluation unit (a pass of thousands of time "
        "steps) each span many steady-state steps, so fewer of them are timed. `n` in the "
        "tables is the number of timed units per side.",
        "- PyTorch: one-hot input, `nn.RNN/GRU/LSTM` + `nn.Linear` loaded with charlm's "
        "weights (identical state_dict names), `F.cross_entropy`, `torch.optim.Adam`, "
        "`clip_grad_norm_(…, 5)`, state detached between steps; the model code is "
        "`benchmarks/_torch_ref.py`.",
        "- Both libraries run in one process on the same cores; other processes on the machine "
        "add noise, which the alternation spreads over both sides.",
        "",
    ]
    return "\n".join(lines)


def _simple_row(r, fig, extra=""):
    rr = (f"{min(fig.round_ratios):.2f}–{max(fig.round_ratios):.2f}" if fig.round_ratios
          else "—")
    return (f"| {r.config} | {r.cell} | {extra}{fmt_rate(fig.rate_a)} | {fmt_rate(fig.rate_b)} | "
            f"{fmt_ratio(fig.ratio)} | {rr} | {len(fig.a)} |")


# ---- main -----------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--quick", action="store_true",
                   help=f"fewer units, configs {','.join(QUICK_CONFIGS)} unless --configs (~3 min)")
    p.add_argument("--configs", help=f"comma list of {','.join(CONFIGS)}")
    p.add_argument("--cells", default=",".join(CELLS), help="comma list of rnn,gru,lstm")
    p.add_argument("--out", type=Path, default=RESULTS, help="the Markdown report")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    p.add_argument("--no-memory", action="store_true", help="skip the big-corpus RSS run")
    args = p.parse_args(argv)
    configs = args.configs.split(",") if args.configs else list(
        QUICK_CONFIGS if args.quick else CONFIGS)
    cells = args.cells.split(",")
    bad = [c for c in configs if c not in CONFIGS] + [c for c in cells if c not in CELLS]
    if bad:
        p.error(f"unknown config or cell: {', '.join(bad)}")
    args.config_list, args.cell_list = configs, cells
    return args


def main(argv=None):
    args = parse_args(argv)
    run_started = time.perf_counter()
    run_meter = LoadMeter()
    if not args.corpus.is_file():
        raise SystemExit(f"corpus {args.corpus} not found; pass --corpus PATH")
    try:
        import _torch_ref as ref
        import torch
    except ImportError:
        torch = ref = None
    threads, source = blas_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    plans = QUICK_PLANS if args.quick else FULL_PLANS
    info = machine_info(torch, threads, source)
    corpus = data.read_corpus([args.corpus])
    train_ids, val_ids = data.split_train_val(corpus.ids, VAL_FRAC)
    info.update(corpus_chars=len(corpus.ids), vocab=corpus.vocab.size, val_chars=len(val_ids))
    console.print(f"[bold]charlm benchmark[/bold]: {info['cpu']}, {info['threads']}")
    if torch is None:
        console.print("[yellow]PyTorch is not installed: charlm's own figures only[/yellow]")

    gemm = Gemm()
    peak = [gemm() for _ in range(3)]
    console.print(f"float32 GEMM: {gflops(statistics.median(peak)):.1f} GFLOP/s")

    rows = []
    with tempfile.TemporaryDirectory(prefix="charlm-bench-") as tmp:
        startup = None
        if not args.no_startup:
            console.print("[bold]start-up[/bold]")
            startup = bench_startup(args.corpus, tmp)
        for name in args.config_list:
            for cell in args.cell_list:
                workdir = Path(tmp) / f"{name}-{cell}"
                workdir.mkdir()
                rows.append(bench_config(name, cell, corpus, train_ids, val_ids, plans,
                                         torch, ref, workdir, gemm))
                peak += rows[-1].train.probe
                gc.collect()
        peak += [gemm() for _ in range(3)]
        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        memory = None
        if not args.no_memory:
            console.print("[bold]memory[/bold]")
            memory = bench_memory(args.corpus, tmp)
    peak_gflops = gflops(statistics.median(peak))
    run_seconds = time.perf_counter() - run_started
    info["other_load"] = run_meter.fraction()

    console.print()
    console.print(terminal_table(rows))
    summary = Table(title="targets")
    for col in ("target", "measured", "holds"):
        summary.add_column(col)
    for t, m, ok in targets(rows, startup, memory):
        summary.add_row(t.replace("`", ""), m, ok.replace("**", ""))
    console.print(summary)
    console.print(f"float32 GEMM peak {peak_gflops:.1f} GFLOP/s; benchmark peak RSS "
                  f"{self_rss / 2**20:.0f} MiB; run took {run_seconds / 60:.1f} min; other "
                  f"processes took {fmt_load(info['other_load'])} of the CPU meanwhile")
    args.out.write_text(markdown(args, info, rows, peak, startup, memory, run_seconds, plans,
                                 self_rss), encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
