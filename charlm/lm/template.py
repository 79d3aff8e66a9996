"""The form a generated text takes: how many characters, which of them are forced, which
characters a chosen position may take, and the stop strings that end it early.

A template is text in which `_` marks a position the model chooses and every other character
is forced: fed to the model as if it had been sampled. A chosen position never takes
whitespace, punctuation or a control character unless --allow says so, so that a poem's
punctuation comes from the template alone.

Dimensions: V vocabulary. The allowed set is one (V,) mask, shared by every chosen position.
"""

import unicodedata
from dataclasses import dataclass, field

import numpy as np

from charlm.errors import CorpusError, UsageError

CHOSEN = "_"
ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "_": "_"}   # `\_` forces an underscore
# --allow's named classes, written as in POSIX brackets; what a chosen position refuses by default
CLASSES = {
    "[:space:]": lambda ch: ch.isspace(),
    "[:punct:]": lambda ch: unicodedata.category(ch).startswith("P"),
    "[:cntrl:]": lambda ch: unicodedata.category(ch).startswith("C") and not ch.isspace(),
}


@dataclass
class Form:
    """length characters; forced maps a position to the id fed there; chosen positions draw
    from the ids where allowed (V,) is True (None: any id)."""

    length: int
    forced: dict[int, int] = field(default_factory=dict)
    allowed: np.ndarray | None = None

    @classmethod
    def free(cls, length):
        """length characters, every one chosen from the whole vocabulary (plain sampling)."""
        return cls(length)


def unescape(text, what, underscore=False):
    """text with \\n, \\t and \\\\ (and \\_ where underscore) replaced, so that a shell user can
    write a newline; any other backslash sequence is an error naming what."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1:i + 2]
            if nxt not in ESCAPES or (nxt == "_" and not underscore):
                known = "\\n, \\t, \\\\" + (", \\_" if underscore else "")
                raise UsageError(f"{what} has the unknown escape '\\{nxt}'; the escapes are "
                                 f"{known}")
            out.append((ESCAPES[nxt], True))
            i += 2
        else:
            out.append((ch, False))
            i += 1
    return out


def parse_template(template, vocab, allow=()):
    """--template TEXT (escapes as in unescape) -> Form; allow: --allow's values."""
    chars = unescape(template, "--template", underscore=True)
    chosen = [i for i, (ch, escaped) in enumerate(chars) if ch == CHOSEN and not escaped]
    if not chosen:
        raise UsageError("--template has no '_' for the model to fill; write '_' at each "
                         "position it should choose (\\_ is a literal underscore)")
    forced = {}
    for i, (ch, escaped) in enumerate(chars):
        if ch == CHOSEN and not escaped:
            continue
        char_id = vocab.index(ch)
        if char_id is None:
            raise CorpusError(f"--template's character {ch!r} (U+{ord(ch):04X}, position "
                              f"{i + 1}) is not in the model's vocabulary; use characters "
                              "from the training text")
        forced[i] = char_id
    return Form(len(chars), forced, allowed_mask(vocab, allow))


def allowed_mask(vocab, allow=()):
    """(V,) bool: the ids a chosen position may take. Refused by default: whitespace,
    punctuation (Unicode P*) and control or other invisible characters (C*), unless one of
    allow's values names them, as characters or as a class [:space:], [:punct:], [:cntrl:]."""
    chars, classes = _allow_spec(allow)
    mask = np.zeros(vocab.size, bool)
    for i in range(vocab.size):
        ch = vocab.char(i)
        refused = [name for name, test in CLASSES.items() if test(ch)]
        mask[i] = not refused or ch in chars or any(name in classes for name in refused)
    if not mask.any():
        raise CorpusError("no character of the model's vocabulary may fill a '_' of --template; "
                          "allow some with --allow")
    return mask


def _allow_spec(allow):
    """--allow's values -> (literal characters, class names)."""
    chars, classes = set(), set()
    for value in allow:
        rest, named = value, [name for name in CLASSES if name in value]
        for name in named:
            rest = rest.replace(name, "")
        if "[:" in rest or not (rest or named):
            raise UsageError(f"--allow {value!r} names no characters or an unknown class; give "
                             f"characters, or the classes {', '.join(CLASSES)}")
        classes.update(named)
        chars.update(ch for ch, _ in unescape(rest, "--allow"))
    return chars, classes


def parse_stops(stops, vocab):
    """--stop values (escapes as in unescape) -> the strings; each must be able to occur."""
    parsed = []
    for stop in stops:
        text = "".join(ch for ch, _ in unescape(stop, "--stop"))
        if not text:
            raise UsageError("--stop '' is empty and would end every sample at once; give the "
                             "text a sample ends with, e.g. --stop '\\n\\n'")
        missing = [ch for ch in text if vocab.index(ch) is None]
        if missing:
            raise CorpusError(f"--stop {stop!r} has {missing[0]!r}, which is not in the "
                              "model's vocabulary, so it could never occur")
        parsed.append(text)
    return Stops(parsed)


class Stops:
    """The stop strings: a text ends at the first place one of them ends."""

    def __init__(self, texts=()):
        self.texts = list(texts)
        self.longest = max((len(t) for t in self.texts), default=0)

    def __bool__(self):
        return bool(self.texts)

    def ended(self, tail):
        """Whether text ending in tail (its last `longest` characters suffice) has just hit a
        stop string."""
        return any(tail.endswith(t) for t in self.texts)
