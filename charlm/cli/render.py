"""Output for people: rich tables, warnings and notes on stderr, the figures' wording.

The only module besides the commands that imports rich; imported inside the commands, so that
`charlm --help` never loads it.
"""

import os

from rich.console import Console
from rich.table import Table

from charlm.nn import loss

err_console = Console(stderr=True, soft_wrap=True)   # a warning stays one greppable line
PIPED_WIDTH = 160      # a table written to a file or a pipe: rich would assume 80 columns


def print_table(table, stderr=False):
    """A table on stdout (or stderr); into a file or a pipe it keeps its natural width, so that
    paths are not cut in two."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PIPED_WIDTH)
    console.print(table)


def key_value_table(title):
    return Table(title=title, show_header=False)


def warn(message):
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False)


def note(message):
    """A line on stderr, printed as given (no markup, no highlighting)."""
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)


def nats(value):
    """A loss as the tables show it: nats, bits and perplexity."""
    return (f"{value:.4f} nats/char, {loss.bits_per_char(value):.4f} bits/char, "
            f"perplexity {loss.perplexity(value):.3f}")


def sample_line(text, width):
    """Generated text on one line of at most width cells: newlines shown as ↵, other control
    characters and whitespace as spaces (a wide CJK character takes two cells)."""
    from rich.cells import cell_len, set_cell_size
    shown = "".join("↵" if c == "\n" else " " if c.isspace() or not c.isprintable() else c
                    for c in text)
    return set_cell_size(shown, width).rstrip() if cell_len(shown) > width else shown


def read_corpus(paths, encoding_errors):
    """charlm.data.text.read_corpus, with its warnings (files skipped, bytes replaced) shown."""
    from charlm.data import text
    corpus = text.read_corpus(paths, encoding_errors)
    for warning in corpus.warnings:
        warn(warning)
    return corpus
