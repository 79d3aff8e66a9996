"""`charlm plot`: training and validation loss of one or more runs, in the terminal or a file."""

from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import app


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories (or their metrics.jsonl files)."),
    x: o.XAxis = typer.Option(o.XAxis.steps, "--x", help="What the x axis counts: training steps, or seconds since the run began."),
    out: Path | None = typer.Option(None, help="Write the chart to this .svg (or .png, with matplotlib installed) instead of drawing it in the terminal."),
):
    """Plot training (dotted) and validation (solid) loss against steps or seconds."""
    from charlm.cli import render
    from charlm.train.metrics import read_run
    suffix = out.suffix.lower() if out is not None else None
    if suffix not in (None, ".svg", ".png"):
        raise typer.BadParameter(f"{out} must end in .svg or .png", param_hint="'--out'")
    loaded = [read_run(path) for path in runs]
    for run in loaded:
        for warning in run.warnings:
            render.warn(warning)
    chart = _chart(loaded, x.value)
    if out is None:
        _draw(chart)
    else:
        _write(chart, out, suffix)
        render.note(f"wrote {out}")


def _chart(runs, x_axis):
    """The Chart of runs: per run a colour, its validation loss solid, its training dotted."""
    from charlm.chart import PALETTE, Chart, Series
    names = [run.name for run in runs]
    if len(set(names)) < len(names):                       # two runs/x: number them
        names = [f"{i + 1}: {name}" for i, name in enumerate(names)]
    series = []
    for i, (run, name) in enumerate(zip(runs, names)):
        color = PALETTE[i % len(PALETTE)]
        for kind, dashed in (("val", False), ("train", True)):
            points = [(p.step if x_axis == "steps" else p.elapsed, getattr(p, kind + "_loss"))
                      for p in run.points]
            points = [(px, py) for px, py in points if py is not None]
            if points:
                series.append(Series(f"{name} {kind}", points, color, dashed))
    x_label = "steps" if x_axis == "steps" else "seconds"
    return Chart(series, x_label, "loss (nats/char)")


def _draw(chart):
    from rich.console import Console
    from rich.text import Text

    from charlm.chart import braille
    console = Console()
    width = max(20, min(console.width, 140) - 12)
    for row in braille.render(chart, width=width, height=max(8, min(20, width // 4))):
        line = Text()
        for text, color in row:
            line.append(text, style=color)
        console.print(line, soft_wrap=True, highlight=False)


def _write(chart, out, suffix):
    from charlm import fs
    from charlm.chart import png, svg
    from charlm.errors import OutputError, UsageError
    if suffix == ".png":
        if not png.available():
            raise UsageError(f"writing {out} needs matplotlib: pip install 'charlm[plot]', or "
                             "write an .svg")
        payload = png.render(chart)
    else:
        payload = svg.render(chart).encode("utf-8")
    try:
        fs.write_atomic(out, payload)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}; choose another --out") from None
