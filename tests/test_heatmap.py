"""`eval perplexity --show` and `--html`: per-character surprise for every model kind, the
terminal colours and the page's structure."""

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_one_line_error, run
from test_export import KINDS, weights_file

from charlm import lm
from charlm.cli import heatmap
from charlm.lm.surprise import surprise

DATA = Path(__file__).parent / "data" / "format1"
# the format-1 models were trained on English; every character here is in their vocabularies
ENGLISH = "The lazy dog.\nThe quick brown fox jumps over the lazy dog.\n"
HOSTILE_CHARS = "ab <&\">'\n"
HOSTILE_TEXT = 'a <b> & "a" \'b\'\n<&">\n' * 3


@pytest.fixture(params=["gru", "lstm", "rnn", "ngram", "adaptive"])
def any_model(request, tmp_path):
    """A checkpoint of each kind the language-model interface loads, and a text in its
    vocabulary."""
    if request.param == "adaptive":
        path = weights_file(tmp_path / "adaptive.npz", chars=HOSTILE_CHARS,
                            **(KINDS["lstm-embed-adaptive"] | {"cutoffs": (2, 5)}))
        return path, HOSTILE_TEXT
    return DATA / f"{request.param}.npz", ENGLISH


def test_the_surprise_adds_up_to_the_score_and_its_top_five_are_ranked(any_model):
    path, text = any_model
    model = lm.load(path)
    ids = model.vocab.encode(text)[0]
    s = surprise(model, ids)
    assert s.nats.shape == (len(ids) - 1,) and s.top_ids.shape == (len(ids) - 1, 5)
    assert s.nats.sum() == pytest.approx(model.score(ids)[0], rel=1e-5)
    assert np.all(np.diff(s.top_probs, axis=1) <= 0) and np.all(s.top_probs.sum(1) <= 1 + 1e-9)
    assert np.all(s.top_probs[:, 0] >= np.exp(-s.nats) - 1e-9)     # none beats the best
    actual = ids[1:, None] == s.top_ids
    seen = actual.any(axis=1)
    assert seen.any()
    assert np.allclose(s.top_probs[actual], np.exp(-s.nats[seen]), rtol=1e-6)
    stepper = model.stepper()                 # the whole distribution, ranked independently
    for t in range(len(ids) - 1):
        scores = stepper.step(int(ids[t])).astype(np.float64)
        assert list(s.top_ids[t]) == list(np.argsort(-scores, kind="stable")[:5]), t


def test_the_bands_are_the_legend_s_edges():
    assert [heatmap.band(n) for n in (0, 0.0999, 0.1, 0.49, 0.5, 1, 1.99, 2, 4, 5.99, 6, 80)] \
        == [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6]
    assert heatmap.legend_labels() == ["< 0.1", "0.1\u20130.5", "0.5\u20131", "1\u20132",
                                       "2\u20134", "4\u20136", "\u2265 6"]


class Page(HTMLParser):
    """The parts of a heat-map page the tests look at."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.stack, self.spans, self.legend, self.style = [], [], [], [], ""
        self.script = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in ("meta", "br", "link", "img", "input", "hr"):     # void: no end tag
            return
        self.stack.append((tag, attrs))
        if tag == "span" and self._inside("pre"):
            self.spans.append([attrs, ""])
        elif tag == "span" and self._inside("p", "legend"):
            self.legend.append([attrs, ""])

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1][0] == tag, (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        if not self.stack:
            return
        tag = self.stack[-1][0]
        if tag == "span" and self._inside("pre"):
            self.spans[-1][1] += data
        elif tag == "span" and self._inside("p", "legend"):
            self.legend[-1][1] += data
        elif tag == "style":
            self.style += data
        elif tag == "script":
            self.script += data

    def _inside(self, tag, cls=None):
        return any(t == tag and (cls is None or a.get("class") == cls) for t, a in self.stack)


def parse(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_the_page_has_a_span_per_character_its_colour_legend_and_hover_data(tmp_path, capfd):
    ckpt = weights_file(tmp_path / "m.npz", chars=HOSTILE_CHARS, **KINDS["gru"])
    text_file = tmp_path / 'a<&">.txt'
    text_file.write_text(HOSTILE_TEXT, encoding="utf-8")
    out = tmp_path / "heat.html"
    code, _, err = run(capfd, "eval", "perplexity", ckpt, text_file, "--html", out)
    assert code == 0, err
    raw = out.read_text(encoding="utf-8")
    page = parse(out)
    # one span per character, in order; the text's < & " are escaped, else they would not
    # come back as character data of their spans
    assert "".join(text for _, text in page.spans) == HOSTILE_TEXT
    assert all(len(text) == 1 for _, text in page.spans)
    assert "&lt;" in raw and "&amp;" in raw and "&quot;" in raw
    assert ('h1', {}) in page.tags and any('a&lt;&amp;&quot;&gt;.txt' in line
                                             for line in raw.splitlines())
    # the first character is context; every other one has its band, its nats, its top five
    model = lm.load(ckpt)
    expected = surprise(model, model.vocab.encode(HOSTILE_TEXT)[0])
    assert page.spans[0][0] == {"class": heatmap.CONTEXT}          # "a": no prediction
    newlines = [attrs["class"].endswith(" nl") for attrs, _ in page.spans]
    assert newlines == [ch == "\n" for ch in HOSTILE_TEXT]        # each shows a mark
    for t, (attrs, _) in enumerate(page.spans[1:]):
        nats = float(attrs["data-n"])
        assert nats == pytest.approx(expected.nats[t], abs=5e-4)
        assert attrs["class"].split()[0] == f"b{heatmap.band(expected.nats[t])}"
        k = int(attrs["class"].split()[0][1:])     # the band's edges hold the nats
        assert (0, *heatmap.EDGES)[k] <= nats + 5e-4 and nats - 5e-4 < (*heatmap.EDGES, 1e9)[k]
        pairs = [pair.split(":") for pair in attrs["data-t"].split(" ")]
        assert [int(c) for c, _ in pairs] == [int(model.vocab.codepoints[i])
                                             for i in expected.top_ids[t]]
        probs = [float(p) for _, p in pairs]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.003 and len(probs) == 5
    # every band has its colour and its legend entry
    for i, colour in enumerate(heatmap.COLOURS):
        assert re.search(rf"\.b{i}\{{background:{colour};", page.style)
    assert [a["class"] for a, _ in page.legend[:-1]] == [f"b{i}" for i in range(7)]
    assert [text for _, text in page.legend[:-1]] == heatmap.legend_labels()
    assert "data-t" in page.script and "mouseover" in page.script
    # self-contained: nothing is fetched, and the policy forbids fetching
    assert not any(k in ("src", "href", "action", "srcset") for _, a in page.tags for k in a)
    for pattern in ("http:", "https:", "url(", "@import", "//"):
        assert pattern not in page.style, pattern
    assert not re.search(r"(https?|ftp|file|data):", raw) and "default-src 'none'" in raw


def test_every_model_kind_gets_a_page(any_model, tmp_path, capfd):
    path, text = any_model
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    code, _, err = run(capfd, "eval", "perplexity", path, tmp_path / "t.txt", "--html",
                       tmp_path / "h.html")
    assert code == 0, err
    page = parse(tmp_path / "h.html")
    assert "".join(t for _, t in page.spans) == text
    assert sum(float(a["data-n"]) for a, _ in page.spans[1:]) == pytest.approx(
        lm.load(path).score(lm.load(path).vocab.encode(text)[0])[0], abs=5e-4 * len(text))


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def test_show_colours_each_character_by_its_band(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLORTERM", "truecolor")
    (tmp_path / "t.txt").write_text(ENGLISH, encoding="utf-8")
    code, out, err = run(capfd, "eval", "perplexity", DATA / "lstm.npz", tmp_path / "t.txt",
                         "--show")
    assert code == 0, err
    model = lm.load(DATA / "lstm.npz")
    expected = surprise(model, model.vocab.encode(ENGLISH)[0])
    colours = {"48;2;" + ";".join(str(int(c[i:i + 2], 16)) for i in (1, 3, 5)): k
               for k, c in enumerate(heatmap.COLOURS)}
    shown, background = [], None          # (character, band) as the terminal gets them
    for piece in _SGR.split(out.split("\n", 1)[1]):
        if re.fullmatch(r"[0-9;]*", piece):
            found = [k for code_, k in colours.items() if code_ in piece]
            background = found[0] if found else None
        else:
            shown += [(ch, background) for ch in piece]
    marks = [b for ch, b in shown if ch == heatmap.NEWLINE_MARK]   # a coloured mark, then
    shown = [(ch, b) for ch, b in shown if ch != heatmap.NEWLINE_MARK]  # the line break
    shown = shown[:len(ENGLISH)]
    assert "".join(ch for ch, _ in shown) == ENGLISH
    assert marks[:ENGLISH.count("\n")] == [heatmap.band(expected.nats[t - 1])
                                            for t, ch in enumerate(ENGLISH) if ch == "\n"]
    shown = [(ch, None if ch == "\n" else b) for ch, b in shown]
    assert shown[0][1] is None                                # context, uncoloured
    assert [b for _, b in shown[1:]] == [None if ch == "\n" else heatmap.band(n)
                                         for ch, n in zip(ENGLISH[1:], expected.nats)]
    assert "nats:" in out and "perplexity" in out


def test_a_long_text_is_shown_in_part_and_scored_whole(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(heatmap, "MAX_CHARS", 40)
    (tmp_path / "t.txt").write_text(ENGLISH * 3, encoding="utf-8")
    code, out, err = run(capfd, "eval", "perplexity", DATA / "gru.npz", tmp_path / "t.txt",
                         "--html", tmp_path / "h.html", "--json")
    assert code == 0, err
    assert f"cover the first 40 of the {len(ENGLISH) * 3} characters" in err
    assert len(parse(tmp_path / "h.html").spans) == 40
    assert f'"chars": {len(ENGLISH) * 3 - 1}' in out


def test_bad_heat_map_options_are_one_line_errors(tmp_path, capfd):
    (tmp_path / "t.txt").write_text(ENGLISH, encoding="utf-8")
    code, _, err = run(capfd, "eval", "perplexity", DATA / "gru.npz", tmp_path / "t.txt",
                       "--show", "--json")
    assert_one_line_error(err, code, 2, "--show", "--html")
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    code, _, err = run(capfd, "eval", "perplexity", DATA / "gru.npz", tmp_path / "t.txt",
                       "--html", mine)
    assert_one_line_error(err, code, 2, "not a charlm heat map")
    assert mine.read_text() == "<p>my notes</p>"
    page = tmp_path / "heat.html"
    for _ in range(2):                    # an earlier heat map is replaced
        code, _, err = run(capfd, "eval", "perplexity", DATA / "gru.npz", tmp_path / "t.txt",
                           "--html", page)
        assert code == 0, err
