"""A chart as PNG bytes, through matplotlib where the optional `plot` extra installed it."""

import io


def available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def render(chart):
    """PNG bytes of chart (the same series, colours and styles as the SVG)."""
    import matplotlib
    matplotlib.use("Agg")                       # no display needed
    from matplotlib import pyplot as plt
    figure, axes = plt.subplots(figsize=(7.6, 4.4), dpi=100)
    try:
        for s in chart.series:
            xs, ys = zip(*s.points) if s.points else ((), ())
            axes.plot(xs, ys, color=s.color, linestyle="--" if s.dashed else "-",
                      linewidth=1.6, label=s.label)
        axes.set_xlabel(chart.x_label)
        axes.set_ylabel(chart.y_label)
        if chart.title:
            axes.set_title(chart.title)
        axes.grid(color="#e4e4e4")
        axes.legend(loc="upper right")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()
