"""A chart as an SVG document, written by hand (no plotting library needed): axes with round
ticks and a light grid, one polyline per series (training dashed), a legend at the top right.
"""

from xml.sax.saxutils import escape

from charlm.chart import scale, tick_label, ticks

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 40, 56           # margins around the plot area


def render(chart):
    """The SVG document (str) of chart."""
    x0, x1, y0, y1 = chart.bounds()
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + scale(x, x0, x1, w)

    def py(y):
        return TOP + h - scale(y, y0, y1, h)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    if chart.title:
        out.append(f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="14">'
                   f'{escape(chart.title)}</text>')
    out += _grid(x0, x1, y0, y1, px, py, w, h)
    for s in chart.series:
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        out.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="1.6"{dash} '
                   f'points="{coords}"/>')
    out += _legend(chart.series)
    out.append(f'<text x="{LEFT + w / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
               f'{escape(chart.x_label)}</text>')
    out.append(f'<text transform="translate(16 {TOP + h / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(chart.y_label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _grid(x0, x1, y0, y1, px, py, w, h):
    """The plot's frame, grid lines and tick labels."""
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#444"/>']
    xs, ys = ticks(x0, x1, 6), ticks(y0, y1, 6)
    x_step = xs[1] - xs[0] if len(xs) > 1 else 1.0
    y_step = ys[1] - ys[0] if len(ys) > 1 else 1.0
    for v in xs:
        x = px(v)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + h}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + h + 18}" text-anchor="middle">'
                   f'{tick_label(v, x_step)}</text>')
    for v in ys:
        y = py(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + w}" y2="{y:.1f}" '
                   'stroke="#e4e4e4"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{tick_label(v, y_step)}</text>')
    return out


def _legend(series):
    """One entry a series, a short line in its style and its label, in a box at the top
    right."""
    longest = max((len(s.label) for s in series), default=0)
    box_w, box_h = 44 + 7 * longest, 8 + 18 * len(series)
    x, y = WIDTH - RIGHT - box_w - 8, TOP + 8
    out = [f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" fill="white" '
           'fill-opacity="0.85" stroke="#bbb"/>']
    for i, s in enumerate(series):
        line_y = y + 14 + 18 * i
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        out.append(f'<line x1="{x + 8}" y1="{line_y}" x2="{x + 32}" y2="{line_y}" '
                   f'stroke="{s.color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 38}" y="{line_y + 4}">{escape(s.label)}</text>')
    return out
