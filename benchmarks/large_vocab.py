"""Training speed at a large vocabulary: charlm's output layers against PyTorch's, same run.

A GRU (2x128 by default) at batch 32 x 64 over V = 6,000 Zipf-distributed characters (id 0
the most frequent, as an adaptive model's ranked ids are). One training step is the forward
pass, the loss and the backward pass into every parameter's gradient (no optimizer: both
sides would add the same few whole-buffer operations). Variants:
  charlm  one-hot input + full softmax (the default before large-vocabulary support)
  charlm  embedding + full softmax
  charlm  embedding + adaptive softmax (the large-vocabulary default)
  torch   nn.Embedding + nn.GRU + nn.Linear, F.cross_entropy (the script users write)
  torch   nn.Embedding + nn.GRU + nn.AdaptiveLogSoftmaxWithLoss, same cutoffs
Then sampling at batch 1 (one character at a time, each fed back in, drawn from the softmax at
temperature 1): charlm's sampler (charlm.lm.sampling over the inference Stepper) with the full
and the adaptive softmax, against the same models in PyTorch (one (1, 1) step of nn.Embedding +
nn.GRU, then nn.Linear + softmax, or AdaptiveLogSoftmaxWithLoss.log_prob, and multinomial).
Runs are interleaved round by round; medians of chars/s are reported.

    .venv/bin/python benchmarks/large_vocab.py [--vocab 6000] [--hidden 128] [--rounds 5]
"""

import argparse
import os
import statistics
import time

import numpy as np

from charlm.nn import adaptive, model
from charlm.nn.workspace import Workspace

T, B, EMBED = 64, 32, 128


def zipf_ids(rng, V, n):
    p = 1.0 / np.arange(1, V + 1) ** 1.1
    return rng.choice(V, n, p=p / p.sum())


def charlm_step(cfg, rng, ids):
    _, params = model.init_params(cfg, rng)
    _, grads = model.allocate(model.param_shapes(cfg))
    ws, state = Workspace(), model.initial_state(cfg, B)

    def step():
        model.loss_and_grads(params, cfg, ids[:-1], ids[1:], state, grads, ws=ws)
    return step


def torch_step(cfg, ids, torch):
    V, H = cfg.vocab_size, cfg.hidden
    embed = torch.nn.Embedding(V, EMBED)
    rnn = torch.nn.GRU(EMBED, H, cfg.layers)
    x = torch.from_numpy(ids[:-1].astype(np.int64))
    y = torch.from_numpy(ids[1:].astype(np.int64)).reshape(-1)
    if cfg.softmax == "adaptive":
        out = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cfg.cutoffs), cfg.div_value)
    else:
        out = torch.nn.Linear(H, V)
    modules = [embed, rnn, out]

    def step():
        for m in modules:
            m.zero_grad(set_to_none=True)
        hs, _ = rnn(embed(x))
        rows = hs.reshape(-1, H)
        if cfg.softmax == "adaptive":
            loss = out(rows, y).loss
        else:
            loss = torch.nn.functional.cross_entropy(out(rows), y)
        loss.backward()
    return step


SAMPLE_LEN = 300


def charlm_sampler(cfg, rng):
    """Generating SAMPLE_LEN characters with charlm's sampler, from fresh weights."""
    from charlm.lm.sampling import generate
    from charlm.nn.inference import Stepper

    _, params = model.init_params(cfg, rng)

    def run():
        stepper = Stepper(params, cfg)
        for _ in generate(stepper, [0], SAMPLE_LEN, np.random.default_rng(1)):
            pass
    return run


def torch_sampler(cfg, torch):
    """The same in PyTorch, as its users write it: a (1, 1) step, softmax, multinomial."""
    V, H = cfg.vocab_size, cfg.hidden
    embed = torch.nn.Embedding(V, EMBED)
    rnn = torch.nn.GRU(EMBED, H, cfg.layers)
    if cfg.softmax == "adaptive":
        out = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cfg.cutoffs), cfg.div_value)
    else:
        out = torch.nn.Linear(H, V)

    @torch.no_grad()
    def run():
        x, state = torch.zeros((1, 1), dtype=torch.int64), None
        for _ in range(SAMPLE_LEN):
            hs, state = rnn(embed(x), state)
            if cfg.softmax == "adaptive":
                probs = out.log_prob(hs.view(1, H)).exp().view(-1)
            else:
                probs = torch.softmax(out(hs.view(1, H)).view(-1), dim=0)
            x = torch.multinomial(probs, 1).view(1, 1)
    return run


def seconds(step, reps):
    step()                                            # warm-up: first-touch allocations
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=6000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    V = args.vocab
    ids = zipf_ids(rng, V, (T + 1) * B).reshape(T + 1, B)
    cutoffs = adaptive.frequency_cutoffs(np.bincount(zipf_ids(rng, V, 500_000), minlength=V))
    base = {"cell": "gru", "vocab_size": V, "hidden": args.hidden, "layers": args.layers}
    configs = {
        "charlm one-hot + full": model.ModelConfig(**base),
        "charlm embedding + full": model.ModelConfig(**base, embed=EMBED),
        "charlm embedding + adaptive": model.ModelConfig(**base, embed=EMBED,
                                                         softmax="adaptive", cutoffs=cutoffs),
    }
    steps = {name: charlm_step(cfg, rng, ids) for name, cfg in configs.items()}
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        steps["torch embedding + full"] = torch_step(configs["charlm embedding + full"], ids,
                                                     torch)
        steps["torch embedding + adaptive"] = torch_step(
            configs["charlm embedding + adaptive"], ids, torch)
    except ImportError:
        print("torch is not installed: charlm rows only")
    samplers = {"charlm embedding + full": charlm_sampler(configs["charlm embedding + full"],
                                                          rng),
                "charlm embedding + adaptive": charlm_sampler(
                    configs["charlm embedding + adaptive"], rng)}
    if "torch embedding + full" in steps:
        samplers["torch embedding + full"] = torch_sampler(configs["charlm embedding + full"],
                                                           torch)
        samplers["torch embedding + adaptive"] = torch_sampler(
            configs["charlm embedding + adaptive"], torch)
    rates = {name: [] for name in steps}
    sample_rates = {name: [] for name in samplers}
    for _ in range(args.rounds):                      # interleaved: noise hits every variant
        for name, step in steps.items():
            rates[name].append(T * B / seconds(step, args.reps))
        for name, run in samplers.items():
            sample_rates[name].append(SAMPLE_LEN / seconds(run, 1))
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"GRU {args.layers}x{args.hidden}, V = {V}, batch {B} x {T}, cutoffs {cutoffs}; "
          f"training step (forward, loss, backward), median chars/s of {args.rounds} rounds")
    for name, rate in median.items():
        print(f"  {name:30s} {rate:10,.0f}")
    ours = median["charlm embedding + adaptive"]
    print(f"  adaptive / charlm one-hot + full: {ours / median['charlm one-hot + full']:.2f}")
    for other in ("torch embedding + adaptive", "torch embedding + full"):
        if other in median:
            print(f"  adaptive / {other}: {ours / median[other]:.2f}")
    sampled = {name: statistics.median(r) for name, r in sample_rates.items()}
    print(f"sampling at batch 1, {SAMPLE_LEN} characters, median chars/s of {args.rounds} rounds")
    for name, rate in sampled.items():
        print(f"  {name:30s} {rate:10,.0f}")
    for kind in ("full", "adaptive"):
        if f"torch embedding + {kind}" in sampled:
            ratio = sampled[f"charlm embedding + {kind}"] / sampled[f"torch embedding + {kind}"]
            print(f"  charlm / torch, {kind}: {ratio:.2f}")


if __name__ == "__main__":
    main()
