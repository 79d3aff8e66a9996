"""`charlm fill`: the missing characters of a text (marked `_`) and each one's candidates."""

import json
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app


@app.command()
def fill(
    checkpoint: Path = typer.Argument(..., help="A .npz checkpoint of any kind."),
    text: str = typer.Argument(..., help="The text, with _ for each missing character."),
    top: int = typer.Option(5, "--top", min=1, help="Candidates shown per blank."),
    beam: int = typer.Option(8, "--beam", min=1, help="Hypotheses kept while filling several blanks."),
    unknown: o.Unknown = typer.Option(o.Unknown.error, help="Characters outside the vocabulary: error or skip."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Fill each _ in TEXT: the best completion and each blank's top candidates.

    A bidirectional model (train --bidirectional) reads both sides of a blank in one pass; any other model ranks a blank's candidates by the probability of the whole completed text.
    """
    from charlm import lm
    from charlm.lm import fill as filler
    model = lm.load(checkpoint)
    ids, blanks, skipped = filler.encode(text, model.vocab, unknown.value)
    result = filler.fill(model, ids, blanks, top, beam, skipped)
    method = "cloze" if filler.is_cloze(model) else "whole-text rescoring"
    if as_json:
        print(json.dumps({"checkpoint": str(model.path), "model": model.describe(),
                          "method": method, "text": result.text, "skipped": result.skipped,
                          "blanks": [{"position": pos, "candidates": [
                              {"char": c, "prob": p} for c, p in cands]}
                              for pos, cands in result.blanks]}, ensure_ascii=False, indent=2))
        return
    from charlm.cli import render
    if skipped:
        render.warn(f"{skipped} character(s) outside the vocabulary were skipped")
    print(result.text)
    for n, (pos, cands) in enumerate(result.blanks, 1):
        shown = "  ".join(f"{c!r} {p:.3f}" for c, p in cands)
        print(f"blank {n} (index {pos}): {shown}")
    render.note(f"{model.describe()}, {method}")
