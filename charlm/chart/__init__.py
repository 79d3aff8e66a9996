"""Line charts of training curves, drawn by charlm itself: the chart (series, axes, scales)
here, its renderings in svg.py (a file), braille.py (a terminal) and png.py (matplotlib, an
optional extra). Nothing here reads files or prints: the renderers return text or bytes.
"""

import math
from dataclasses import dataclass, field

# Tableau 10: distinct in colour, and still apart for the commonest colour blindness
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Series:
    label: str
    points: list                 # [(x, y)] in drawing order
    color: str                   # "#rrggbb"
    dashed: bool = False


@dataclass
class Chart:
    series: list[Series]
    x_label: str
    y_label: str
    title: str = ""
    notes: list[str] = field(default_factory=list)    # a line each under the chart

    def bounds(self):
        """(x0, x1, y0, y1): every point inside, the x axis from 0 (steps and seconds start
        there), the loss axis padded a little, never empty."""
        xs = [x for s in self.series for x, _ in s.points]
        ys = [y for s in self.series for _, y in s.points]
        if not xs:
            return 0.0, 1.0, 0.0, 1.0
        x0, x1, y0, y1 = min(0.0, min(xs)), max(xs), min(ys), max(ys)
        pad = (y1 - y0) * 0.05 or 0.5
        return (x0, x1 if x1 > x0 else x0 + 1, y0 - pad, y1 + pad)


def ticks(lo, hi, count=5):
    """Round tick values inside [lo, hi], 1, 2 or 5 times a power of ten apart: the spacing
    that gives the nearest to count intervals."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda step: abs(span / step - count))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_label(value, step):
    """A tick's text with no more decimals than its spacing needs (1,500 or 0.25)."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if decimals == 0:
        return f"{value:,.0f}"
    return f"{value:.{decimals}f}"


def scale(value, lo, hi, size):
    """value in [lo, hi] to [0, size]."""
    return (value - lo) / (hi - lo) * size if hi > lo else 0.0
