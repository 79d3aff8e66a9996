"""`eval perplexity --show` and `--html`: a text coloured by how surprised the model was.

Each character gets the colour of the band its nats fall in (BANDS, the legend); the first
character of a text is context, with no prediction, and stays uncoloured. The page is one
self-contained file: inline style and script, no fonts, images or requests (its Content
Security Policy forbids any), one <span> per character carrying its nats (data-n) and the
model's five most likely characters there, as code point:probability pairs (data-t), which a
small script shows on hover.
"""

import html
import math

from charlm.lm.surprise import TOP

MAX_CHARS = 10_000                   # shown per run: about 1 MB of page, a few seconds of stepping
# upper edges (nats) of the colour bands, and their colours (ColorBrewer YlOrRd): from "almost
# certain" (p > 0.9) to "far off" (p < 0.0025)
EDGES = (0.1, 0.5, 1.0, 2.0, 4.0, 6.0)
COLOURS = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#e31a1c", "#800026")
DARK = 5                             # bands from here on get white text
CONTEXT = "ctx"                      # the class of a character that has no prediction
NEWLINE = "nl"                       # the class of a line break, which shows NEWLINE_MARK
NEWLINE_MARK = "\u21b5"
MARKER = "<!-- charlm heat map -->"  # lets --html replace its own earlier page, nothing else
_PICTURES = {c: chr(0x2400 + c) for c in range(32)} | {0x7F: "\u2421"}


def band(nats):
    """The colour band (0 .. len(EDGES)) of a prediction's nats."""
    return next((i for i, edge in enumerate(EDGES) if nats < edge), len(EDGES))


def legend_labels():
    bounds = ("0",) + tuple(f"{e:g}" for e in EDGES)
    return [f"< {EDGES[0]:g}"] + [f"{a}\u2013{b}" for a, b in zip(bounds[1:], bounds[2:])] + \
        [f"\u2265 {EDGES[-1]:g}"]


def visible(ch):
    """ch as it is printed: a control character (not newline or tab) as its Unicode picture."""
    if ch in "\n\t":
        return ch
    return _PICTURES.get(ord(ch), ch)


# ---- terminal ----------------------------------------------------------------------------------

def show(texts):
    """Print each (label, chars, Surprise) coloured by band, then the legend (rich)."""
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text
    styles = [Style(color="white" if i >= DARK else "black", bgcolor=c)
              for i, c in enumerate(COLOURS)]
    console = Console(highlight=False, soft_wrap=True)
    for label, chars, surprise in texts:
        console.print(Text(f"── {label}", style="bold"))
        line = Text()
        for t, ch in enumerate(chars):
            style = styles[band(surprise.nats[t - 1])] if t else "dim"
            if ch == "\n":                   # a line break has no width to colour: a mark
                line.append(NEWLINE_MARK, style)
            line.append(visible(ch), None if ch == "\n" else style)
        console.print(line)
    legend = Text("nats: ")
    for i, label in enumerate(legend_labels()):
        legend.append(f" {label} ", styles[i])
        legend.append(" ")
    console.print(legend)


# ---- the page ----------------------------------------------------------------------------------

def page(title, summary, texts, vocab):
    """The self-contained HTML page of texts: [(label, chars, Surprise)]."""
    out = ["<!DOCTYPE html>\n", MARKER, "\n<html><head><meta charset=\"utf-8\">",
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
           f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{_esc(title)}</h1><p class=\"summary\">{_esc(summary)}</p>",
           "<p class=\"legend\">nats (how surprised the model was): "]
    out += [f"<span class=\"b{i}\">{_esc(label)}</span> " for i, label in enumerate(
        legend_labels())]
    out.append(f"<span class=\"{CONTEXT}\">context, no prediction</span>; hover a character "
               f"for the {TOP} characters the model expected there.</p>")
    for label, chars, surprise in texts:
        out.append(f"<h2>{_esc(label)}</h2><pre class=\"text\">")
        out += [_span(t, ch, surprise, vocab) for t, ch in enumerate(chars)]
        out.append("</pre>")
    out.append(f"<div id=\"tip\" hidden></div><script>{_SCRIPT}</script></body></html>\n")
    return "".join(out)


def _span(t, ch, surprise, vocab):
    newline = f" {NEWLINE}" if ch == "\n" else ""
    if t == 0:
        return f"<span class=\"{CONTEXT}{newline}\">{_esc(visible(ch))}</span>"
    nats = surprise.nats[t - 1]
    top = " ".join(f"{int(vocab.codepoints[i])}:{p:.3f}"
                   for i, p in zip(surprise.top_ids[t - 1], surprise.top_probs[t - 1]))
    return (f"<span class=\"b{band(nats)}{newline}\" data-n=\"{nats:.3f}\" "
            f"data-t=\"{top}\">{_esc(visible(ch))}</span>")


def _esc(text):
    return html.escape(text, quote=True)


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "pre.text{font-family:monospace;font-size:15px;line-height:1.6;white-space:pre-wrap;"
    "word-break:break-all}"
    "pre.text span{cursor:default}pre.text span:hover{outline:2px solid #1f5fbf}"
    ".legend span{font-family:monospace;padding:1px 6px;border:1px solid #ccc}"
    f".{CONTEXT}{{color:#888}}.{NEWLINE}::before{{content:\"\\{ord(NEWLINE_MARK):x}\";opacity:.5}}"
    + "".join(f".b{i}{{background:{c};color:{'#fff' if i >= DARK else '#000'}}}"
              for i, c in enumerate(COLOURS))
    + "#tip{position:absolute;background:#fff;border:1px solid #888;padding:6px 9px;"
    "font:13px monospace;box-shadow:2px 2px 6px rgba(0,0,0,.25);pointer-events:none;"
    "white-space:pre}"
)

# Reads data-n and data-t of the character under the pointer; nothing is fetched.
_SCRIPT = """
const tip = document.getElementById("tip");
const named = {10: "\\u23ce", 9: "\\u21e5", 32: "\\u2423"};
const show = (cp) => named[cp] || (cp < 32 ? String.fromCodePoint(0x2400 + cp) :
  cp === 127 ? "\\u2421" : String.fromCodePoint(cp));
function describe(span) {
  const nats = parseFloat(span.dataset.n);
  let text = "this: " + JSON.stringify(span.textContent) + "  " + nats.toFixed(3) +
    " nats (p " + Math.exp(-nats).toFixed(3) + ")\\nexpected:";
  for (const pair of span.dataset.t.split(" ")) {
    const [c, p] = pair.split(":");
    text += "\\n  " + show(parseInt(c, 10)).padEnd(2) + " " +
      (100 * parseFloat(p)).toFixed(1).padStart(5) + "%";
  }
  return text;
}
document.addEventListener("mouseover", (event) => {
  const span = event.target.closest("span[data-t]");
  if (!span) { tip.hidden = true; return; }
  tip.textContent = describe(span);
  const box = span.getBoundingClientRect();
  tip.style.left = (window.scrollX + box.left) + "px";
  tip.style.top = (window.scrollY + box.bottom + 4) + "px";
  tip.hidden = false;
});
const pinned = /^#c(\\d+)$/.exec(location.hash);   // page.html#c42: show character 42's box
if (pinned) {
  const span = document.querySelectorAll("pre.text span")[parseInt(pinned[1], 10)];
  if (span && span.dataset.t) span.dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
}
"""


def run(model, ids_list, labels, show_text, html_path, result):
    """Step model through the first MAX_CHARS characters of the texts; print and/or write."""
    from charlm.cli import render
    from charlm.errors import CheckpointError
    from charlm.lm.surprise import surprise
    texts, left = [], MAX_CHARS
    for label, ids in zip(labels, ids_list):
        if left > 0:
            ids = ids[:left]
            left -= len(ids)
            texts.append((label, model.vocab.decode(ids), surprise(model, ids)))
    total = sum(len(ids) for ids in ids_list)
    if total > MAX_CHARS:
        render.note(f"note: --show and --html cover the first {MAX_CHARS:,} of the "
                    f"{total:,} characters; the table scores them all")
    predictions = sum(len(s.nats) for _, _, s in texts)
    nats = sum(float(s.nats.sum()) for _, _, s in texts)
    if not math.isfinite(nats):
        raise CheckpointError(f"{model.path}: the model produced non-finite probabilities")
    if show_text:
        show(texts)
    if html_path is not None:
        summary = (f"{model.describe()}: {nats / max(predictions, 1):.4f} nats/char over the "
                   f"{predictions:,} predictions shown ({result['nats_per_char']:.4f} over all "
                   f"{result['chars']:,})")
        text = page(f"{model.path} on {', '.join(labels)}", summary, texts, model.vocab)
        _write(html_path, text)
        shown = sum(len(chars) for _, chars, _ in texts)
        render.note(f"wrote {html_path}: {shown:,} characters, {len(text.encode()) / 1e6:.1f} MB")


def check_target(path):
    """Refuse an --html path that holds anything but an earlier heat map, before any work."""
    from charlm.errors import UsageError
    from charlm.fs import open_regular
    if not path.exists():
        return
    try:
        with open_regular(path) as f:
            ours = f.read(64).startswith(f"<!DOCTYPE html>\n{MARKER}".encode())
    except OSError:
        ours = False
    if not ours:
        raise UsageError(f"--html {path} exists and is not a charlm heat map; give a new "
                         "file name or remove it")


def _write(path, text):
    from charlm.errors import OutputError
    from charlm.fs import write_atomic
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}") from exc
