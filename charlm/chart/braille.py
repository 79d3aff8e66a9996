"""A chart in a terminal: Unicode braille cells, 2 x 4 dots each, so that a curve is drawn at
twice the columns and four times the rows of text. Each cell takes the colour of the last
series drawn through it; training curves are dotted (every other pair of dots left out).

Returns rows of (text, colour or None) segments, for the CLI to colour; nothing is printed.
"""

from charlm.chart import scale, tick_label, ticks

# the bit of each dot in a braille cell, by (row, column) within the cell
DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
BLANK = 0x2800


def render(chart, width=72, height=16):
    """The chart as rows of segments [(text, colour)]: the plot with its y axis, the x axis,
    its labels and a legend. width and height: the plot area in character cells."""
    x0, x1, y0, y1 = chart.bounds()
    cells = [[0] * width for _ in range(height)]
    colours = [[None] * width for _ in range(height)]
    for series in chart.series:
        pixels = [(scale(x, x0, x1, 2 * width - 1), scale(y, y0, y1, 4 * height - 1))
                  for x, y in series.points]
        for px, py in _line_pixels(pixels, series.dashed):
            row, col = 4 * height - 1 - py, px
            cells[row // 4][col // 2] |= DOTS[row % 4][col % 2]
            colours[row // 4][col // 2] = series.color
    y_ticks = ticks(y0, y1, max(2, height // 4))
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    labels = {height - 1 - min(height - 1, int(scale(v, y0, y1, height))): tick_label(v, y_step)
              for v in y_ticks}
    margin = max(len(text) for text in labels.values()) + 1
    rows = []
    for r in range(height):
        row = [(labels.get(r, "").rjust(margin - 1) + " ┤" if r in labels else
                " " * margin + "│", None)]
        row += [(chr(BLANK + cells[r][c]), colours[r][c]) for c in range(width)]
        rows.append(row)
    rows.append([(" " * margin + "└" + "─" * width, None)])
    rows.append([(" " * (margin + 1) + _x_labels(x0, x1, width), None)])
    rows.append([(" " * (margin + 1) + chart.x_label.center(width).rstrip(), None)])
    rows += [[("  " + ("┈┈ " if s.dashed else "── "), s.color), (s.label, None)]
             for s in chart.series]
    return rows


def _x_labels(x0, x1, width):
    """Tick labels under the x axis, each starting at its column where it fits."""
    values = ticks(x0, x1, max(2, width // 14))
    step = values[1] - values[0] if len(values) > 1 else 1.0
    line = [" "] * (width + 12)
    end = -1
    for v in values:
        text = tick_label(v, step)
        col = min(int(round(scale(v, x0, x1, width - 1))), width - 1)
        if col > end:
            line[col:col + len(text)] = text
            end = col + len(text)
    return "".join(line).rstrip()


def _line_pixels(points, dashed):
    """Integer dots along straight segments between consecutive points (the dots of a dashed
    line in pairs, every other pair left out)."""
    dots, drawn = [], 0
    for (ax, ay), (bx, by) in zip(points, points[1:] or points):
        n = max(1, int(max(abs(bx - ax), abs(by - ay))))
        for i in range(n + 1):
            t = i / n
            drawn += 1
            if not dashed or (drawn // 2) % 2 == 0:
                dots.append((int(round(ax + (bx - ax) * t)), int(round(ay + (by - ay) * t))))
    return dots
