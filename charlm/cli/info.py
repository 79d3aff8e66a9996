"""`charlm info`: what a checkpoint of any kind holds."""

import json
import math
from pathlib import Path

import typer

from charlm.cli.app import app


@app.command()
def info(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show a checkpoint's configuration, size, vocabulary and progress."""
    from charlm import lm
    model = lm.load(checkpoint)
    config = model.config
    progress = config.get("progress", {})
    report = {"checkpoint": str(checkpoint), "model": config["model"],
              "parameters": model.parameters, "vocab_size": model.vocab.size,
              "step": progress.get("step"), "epoch": progress.get("epoch"),
              "best_val": progress.get("best_val"), "last_val": progress.get("last_val"),
              "train": config.get("train"), "data": config.get("data"),
              "format_version": model.format_version,
              "charlm_version": config.get("charlm_version")}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(checkpoint, model, report)


def _print_report(path, model, report):
    from charlm.cli import render
    from charlm.nn import loss
    config = model.config
    table = render.key_value_table(str(path))
    table.add_row("model", model.describe())
    weights = ", the weights only" if config.get("weights_only") else ""
    table.add_row("written by", f"charlm {report['charlm_version']}, checkpoint format "
                                f"{report['format_version']}{weights}")
    labels = {"step": "steps taken", "epoch": "passes completed"}
    for key in ("parameters", "vocab_size", "step", "epoch"):
        if report[key] is not None:
            table.add_row(labels.get(key, key.replace("_", " ")), f"{report[key]:,}")
    for key in ("best_val", "last_val"):
        nats = report[key]
        if nats is not None:
            table.add_row(key.replace("_", " "), f"{nats:.4f} nats/char "
                          f"({loss.bits_per_char(nats):.4f} bits/char, ppl {math.exp(nats):.3f})")
    for section, key, shown in _settings(config):
        table.add_row(f"{section}.{key}", str(shown))
    if config.get("data"):
        fp = config["data"].get("fingerprint", {})
        table.add_row("corpus", f"{fp.get('chars', 0):,} characters, "
                                f"sha256 {str(fp.get('sha256'))[:16]}…")
    render.print_table(table)


def _settings(config):
    """(section, key, value shown) of the model and train settings: each once (under model),
    the nonlinearity only for a cell that has one, and a 0 as what it means."""
    from charlm.nn.cells import CELLS
    from charlm.train.config import ZERO_MEANS
    model_config = config.get("model") or {}
    cell = CELLS.get(model_config.get("cell"))
    for section in ("model", "train"):
        for k, v in (config.get(section) or {}).items():
            if section == "train" and k in model_config:
                continue                        # shown under model
            if k == "activation" and not (cell and cell.USES_ACTIVATION):
                continue
            if k == "components":               # a mixture's models: whole configs, in --json
                v = "; ".join(_component(c) for c in v)
            shown = ZERO_MEANS[k] if section == "train" and k in ZERO_MEANS and not v else v
            yield section, k, shown


def _component(entry):
    """One model of a mixture as the table shows it: its kind and sizes."""
    m = entry["config"]["model"]
    sizes = m.get("order") if m["cell"] == "ngram" else f"{m['layers']}x{m['hidden']}"
    return f"{m['cell']} {sizes}"
