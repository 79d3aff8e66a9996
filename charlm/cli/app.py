"""The typer application and its command groups; the command modules register on these."""

import os
import sys

import typer

app = typer.Typer(add_completion=True, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Character-level RNN, LSTM and GRU language models in numpy.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure a model on text.")
app.add_typer(eval_app, name="eval")
corpus_app = typer.Typer(no_args_is_help=True, help="Get, generate and describe corpora.")
app.add_typer(corpus_app, name="corpus")


def _print_version(value):
    if value:
        from charlm import __version__
        typer.echo(f"charlm {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True,
                                          callback=_print_version,
                                          help="Print charlm's version and exit.")):
    """Character-level RNN, LSTM and GRU language models in numpy."""


def discard_stdout():
    """Point stdout at /dev/null so the exit-time flush of what is buffered cannot fail again
    (after `| head` went away)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
