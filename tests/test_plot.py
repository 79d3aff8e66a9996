"""`charlm plot`: metrics.jsonl read strictly, and the curves drawn in a terminal, an SVG and a
PNG; several runs on one chart with a legend."""

import json
import xml.etree.ElementTree as ET

import pytest
from conftest import run

from charlm.chart import Chart, Series, braille, png, svg, ticks
from charlm.train.metrics import read_run

SVG = "{http://www.w3.org/2000/svg}"


def write_run(directory, losses, extra_lines=()):
    """A run directory whose metrics.jsonl holds a start record, one validation record per
    (step, train, val) and extra_lines as given."""
    directory.mkdir()
    lines = [json.dumps({"event": "start", "at_step": 0, "elapsed": 0.0})]
    lines += [json.dumps({"step": s, "epoch": 0, "chars_seen": s * 64, "elapsed": s / 10,
                          "train_loss": t, "val_loss": v, "lr": 0.004, "skipped": 0})
              for s, t, v in losses]
    lines += list(extra_lines)
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture
def two_runs(tmp_path):
    a = write_run(tmp_path / "gru", [(10, 3.0, 2.9), (20, 2.5, 2.4), (30, 2.1, 2.2)])
    b = write_run(tmp_path / "lstm", [(10, 3.2, 3.1), (20, 2.8, 2.7)])
    return a, b


def test_the_reader_keeps_validations_and_rollbacks_and_names_each_bad_line(tmp_path):
    rollback = {"event": "rollback", "step": 25, "to_step": 20, "elapsed": 2.5, "lr": 0.002,
                "reason": "x", "skip_step": 25, "rollbacks": 1}
    bad = ["{not json", "[1, 2]", json.dumps({"event": "party", "step": 1}),
           json.dumps({"step": -1, "elapsed": 1.0, "train_loss": 1.0, "val_loss": 1.0}),
           json.dumps({"step": 3, "elapsed": "soon", "train_loss": 1.0, "val_loss": 1.0}),
           json.dumps({"step": 3, "elapsed": 1.0, "train_loss": 1.0}),
           json.dumps({"step": 3, "elapsed": 1.0, "train_loss": "low", "val_loss": 1.0})]
    directory = write_run(tmp_path / "r", [(10, 3.0, None), (20, 2.5, 2.4)],
                          [json.dumps(rollback), *bad])
    metrics = read_run(directory)
    assert metrics.name == "r"
    assert [(p.step, p.elapsed, p.train_loss, p.val_loss) for p in metrics.points] == \
        [(10, 1.0, 3.0, None), (20, 2.0, 2.5, 2.4)]
    assert [(p.step, p.elapsed) for p in metrics.rollbacks] == [(25, 2.5)]
    assert len(metrics.warnings) == len(bad)
    first_bad = 1 + 2 + 1 + 1                   # start, two validations, the rollback
    for i, (warning, fragment) in enumerate(zip(metrics.warnings, (
            "not a JSON line", "not a JSON object", "unknown event 'party'", "'step' is not",
            "'elapsed' is not", "'val_loss' is missing", "'train_loss' is not a number"))):
        assert warning.startswith(f"{directory / 'metrics.jsonl'}:{first_bad + i}: "), warning
        assert fragment in warning and warning.endswith("left out"), warning
    assert read_run(directory / "metrics.jsonl").points == metrics.points   # the file itself


@pytest.mark.parametrize("content,fragment", [
    (None, "has no metrics.jsonl; give a directory that charlm train wrote"),
    ('{"event": "start", "at_step": 0}\n', "holds no validation record"),
])
def test_a_run_without_validations_is_a_clear_error(tmp_path, capfd, content, fragment):
    directory = tmp_path / "r"
    directory.mkdir()
    if content is not None:
        (directory / "metrics.jsonl").write_text(content)
    code, out, err = run(capfd, "plot", directory)
    assert code == 3 and out == ""
    assert err.startswith("error: ") and fragment in err and len(err.splitlines()) == 1


def test_bad_lines_are_warned_about_and_the_rest_is_drawn(two_runs, capfd):
    with open(two_runs[0] / "metrics.jsonl", "a") as f:
        f.write("garbage\n")
    code, out, err = run(capfd, "plot", *two_runs)
    assert code == 0, err
    assert "warning:" in err and "metrics.jsonl:5: not a JSON line; left out" in err
    assert "gru val" in out and "lstm train" in out


def test_the_terminal_chart_draws_every_run_with_a_legend(two_runs, capfd):
    code, out, err = run(capfd, "plot", *two_runs, "--x", "seconds")
    assert code == 0, err
    lines = out.splitlines()
    assert sum(any(0x2801 <= ord(c) <= 0x28FF for c in line) for line in lines) >= 3
    assert "seconds" in out
    legend = [line.strip() for line in lines if line.strip().startswith(("──", "┈┈"))]
    assert legend == ["── gru val", "┈┈ gru train", "── lstm val", "┈┈ lstm train"]


def test_braille_dots_land_where_the_points_are():
    # one series along the diagonal from (0, 0) to (1, 1): bottom-left and top-right cells lit
    chart = Chart([Series("d", [(0.0, 0.0), (1.0, 1.0)], "#000000")], "x", "y")
    rows = braille.render(chart, width=10, height=5)
    plot = ["".join(text for text, _ in row)[-10:] for row in rows[:5]]
    assert plot[4][0] != "\u2800" and plot[0][9] != "\u2800"
    assert plot[0][0] == "\u2800" and plot[4][9] == "\u2800"


def test_svg_has_a_polyline_per_series_inside_the_frame_and_a_legend(two_runs, tmp_path, capfd):
    out = tmp_path / "chart.svg"
    code, _, err = run(capfd, "plot", *two_runs, "--out", out)
    assert code == 0, err
    root = ET.fromstring(out.read_text())       # well-formed XML
    lines = root.findall(f"{SVG}polyline")
    assert [len(p.get("points").split()) for p in lines] == [3, 3, 2, 2]
    assert [p.get("stroke-dasharray") for p in lines] == [None, "6,4", None, "6,4"]
    assert lines[0].get("stroke") == lines[1].get("stroke") != lines[2].get("stroke")
    for polyline in lines:
        for pair in polyline.get("points").split():
            x, y = map(float, pair.split(","))
            assert svg.LEFT <= x <= svg.WIDTH - svg.RIGHT
            assert svg.TOP <= y <= svg.HEIGHT - svg.BOTTOM
    xs = [float(p.split(",")[0]) for p in lines[0].get("points").split()]
    assert xs == sorted(xs) and xs[-1] == svg.WIDTH - svg.RIGHT      # the last step at the edge
    ys = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert ys == sorted(ys)                     # a falling loss goes down the page
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"gru val", "gru train", "lstm val", "lstm train", "steps"} <= set(texts)


def test_an_unknown_output_type_is_a_usage_error(two_runs, tmp_path, capfd):
    code, _, err = run(capfd, "plot", *two_runs, "--out", tmp_path / "chart.pdf")
    assert code == 2 and "must end in .svg or .png" in err
    assert not (tmp_path / "chart.pdf").exists()


def test_png_needs_the_plot_extra(two_runs, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(png, "available", lambda: False)
    code, _, err = run(capfd, "plot", *two_runs, "--out", tmp_path / "chart.png")
    assert code == 2 and "pip install 'charlm[plot]'" in err
    assert not (tmp_path / "chart.png").exists()


def test_png_with_matplotlib(two_runs, tmp_path, capfd):
    pytest.importorskip("matplotlib")
    code, _, err = run(capfd, "plot", *two_runs, "--out", tmp_path / "chart.png")
    assert code == 0, err
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ticks_are_round_and_inside_the_range():
    assert ticks(0, 600, 6) == [0, 100, 200, 300, 400, 500, 600]
    assert ticks(1.43, 2.61, 5) == pytest.approx([1.6, 1.8, 2.0, 2.2, 2.4, 2.6])


def test_a_real_run_plots(small_corpus, tmp_path, capfd):
    directory = tmp_path / "real"
    code, _, err = run(capfd, "train", small_corpus, "--hidden", "8", "--layers", "1",
                       "--batch-size", "2", "--seq-len", "8", "--steps", "6", "--quiet",
                       "--out", directory)
    assert code == 0, err
    metrics = read_run(directory)
    assert [p.step for p in metrics.points] == [1, 2, 3, 4, 5, 6] and not metrics.warnings
    assert all(p.val_loss is not None and p.train_loss is not None for p in metrics.points)
    code, out, err = run(capfd, "plot", directory)
    assert code == 0 and "real val" in out, err
