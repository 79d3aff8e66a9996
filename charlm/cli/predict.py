"""`charlm predict`: the characters a model expects next after a prime, most likely first."""

from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app


@app.command()
def predict(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint."),
    prime: str = typer.Option("", help="The text so far (without it: the start of a line)."),
    top: int = typer.Option(10, min=1, help="How many characters to list."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Prime characters outside the vocabulary: error or skip."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
):
    """The TOP most likely next characters after --prime, with their probabilities."""
    import json

    import numpy as np

    from charlm import lm
    from charlm.cli.sample import _prime
    from charlm.errors import CheckpointError
    from charlm.lm.sampling import best_ids, distribution, feed
    model = lm.load(checkpoint)
    prime_ids, _ = _prime(model.vocab, prime, unknown.value)
    try:
        with np.errstate(all="ignore"):
            p = distribution(feed(model.stepper(), [int(i) for i in prime_ids]))
    except FloatingPointError:
        raise CheckpointError(f"{checkpoint}: the model produced non-finite probabilities; "
                              "the checkpoint is unusable") from None
    rows = [{"char": model.vocab.char(i), "prob": float(p[i])}
            for i in best_ids(p, min(top, model.vocab.size))]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_table(rows, prime)


def _print_table(rows, prime):
    from rich.table import Table

    from charlm.cli import render
    shown = repr(prime[-12:]) if prime else "the start of a line"
    table = Table(title=f"after {shown}")
    for column, justify in (("#", "right"), ("char", "left"), ("probability", "right"),
                            ("cumulative", "right")):
        table.add_column(column, justify=justify)
    total = 0.0
    for rank, row in enumerate(rows, 1):
        total += row["prob"]
        table.add_row(str(rank), _visible(row["char"]), f"{row['prob']:.4f}", f"{total:.4f}")
    render.print_table(table)


def _visible(ch):
    """A character as a table shows it: whitespace and control characters escaped."""
    if ch == " ":
        return "(space)"
    return ch if ch.isprintable() and not ch.isspace() else repr(ch)[1:-1]
