"""`charlm eval cloze`: characters blanked one at a time, guessed by each model (charlm.lm.cloze)."""

import json
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import eval_app


@eval_app.command("cloze")
def eval_cloze(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint of any kind."),
    file: Path = typer.Argument(..., help="The text whose characters are blanked."),
    fraction: float = typer.Option(0.05, callback=o.fraction, help="Share of the characters blanked, one at a time."),
    seed: int = typer.Option(0, min=0, help="Seed of the random choice of blanks."),
    compare: list[Path] | None = typer.Option(None, help="Another checkpoint scored on the same blanks (repeatable)."),
    rescore: bool = typer.Option(False, "--rescore", help="Left-to-right models rank each blank's candidates by the probability of the completed text (as fill does) instead of the left context only."),
    window: int = typer.Option(32, min=1, help="With --rescore: the characters either side of a blank that are scored."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Characters outside a model's vocabulary: error or skip."),
    encoding_errors: o.EncodingErrors = typer.Option(o.EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Blank a seeded random fraction of FILE's characters one at a time; mean nats, top-1 and top-5 accuracy of the blanked characters.

    A bidirectional model reads both sides of each blank; a left-to-right model the left context only, or with --rescore the text on both sides.
    """
    import numpy as np

    from charlm import lm
    from charlm.data import text
    from charlm.data.vocab import codepoints_of
    from charlm.errors import CorpusError
    from charlm.lm import cloze
    models = [lm.load(p) for p in [checkpoint, *(compare or [])]]
    content = text.read_text_file(file, encoding_errors.value)
    cps = codepoints_of(content)
    known = np.ones(len(cps), bool)          # the blanks are the same for every model: with
    for model in models:                     # --unknown skip, in every model's vocabulary
        _, skipped = model.vocab.encode_codepoints(cps, unknown.value, what=str(file))
        if skipped:
            known &= np.array([model.vocab.index(c) is not None for c in content])
    cps = cps[known]
    positions = cloze.blank_positions(len(cps), fraction, seed)
    if len(positions) == 0:
        raise CorpusError(f"{file} has fewer than three characters; nothing to blank")
    results = []
    for model in models:
        ids, _ = model.vocab.encode_codepoints(cps)
        with np.errstate(all="ignore"):
            results.append((model, cloze.evaluate(model, ids.astype(np.int64), positions,
                                                  rescore, window)))
    if as_json:
        print(json.dumps([{"checkpoint": str(m.path), "model": m.describe(), **r}
                          for m, r in results], indent=2))
        return
    _print_results(results, int((~known).sum()))


def _print_results(results, skipped):
    from rich.table import Table

    from charlm.cli import render
    table = Table(title="cloze")
    for column in ("checkpoint", "model", "method"):
        table.add_column(column, overflow="fold")
    for column in ("blanks", "nats", "top-1", "top-5", "seconds"):
        table.add_column(column, justify="right")
    for model, r in results:
        table.add_row(str(model.path), model.describe(), r["method"], f"{r['blanks']:,}",
                      f"{r['nats']:.4f}", f"{r['top1']:.3f}", f"{r['top5']:.3f}",
                      f"{r['seconds']:.1f}")
    render.print_table(table)
    if skipped:
        render.warn(f"{skipped} character(s) outside a vocabulary were skipped")
