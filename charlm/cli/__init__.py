"""The `charlm` command: options -> library -> rich tables and tqdm bars.

One file per command group (train, sample, evaluate, info, corpus) parses its options, calls
the library and renders the result; app.py holds the typer application, options.py the
choices and checks they share, render.py the output helpers. The error boundary lives here:
every CharlmError becomes one `error: ...` line on stderr and its exit code; anything else is a
bug (exit 1). numpy and the library are imported inside the commands, so `charlm --help`
starts fast.
"""

import importlib
import os
import signal
import sys

import typer

try:        # typer >= 0.20 ships its own copy of click
    from typer._click import exceptions as click_exceptions
    from typer._click.utils import echo
except ImportError:
    from click import echo
    from click import exceptions as click_exceptions

from charlm.cli.app import app, discard_stdout
from charlm.errors import CharlmError, die_by_signal, one_line

COMMAND_MODULES = ("train", "sample", "evaluate", "mix", "info", "corpus")   # --help lists this order
for _name in COMMAND_MODULES:
    importlib.import_module(f"charlm.cli.{_name}")        # each registers its commands on app


def _error(message, code):
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv=None):
    """Run the CLI and turn every outcome into an exit status."""
    debug = os.environ.get("CHARLM_DEBUG") == "1"
    try:
        code = app(args=argv, prog_name="charlm", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        echo(exc.ctx.get_help())
        code = 0
    except click_exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        code = _error(one_line(exc.format_message()) + hint, 2)
    except typer.Abort:
        code = 130
    except CharlmError as exc:
        if debug:
            raise
        code = _error(one_line(exc), exc.exit_code)
    except KeyboardInterrupt:
        die_by_signal(signal.SIGINT)
        code = 130
    except BrokenPipeError:
        discard_stdout()            # a reader like `head` went away: nothing left to say to it
        code = 0
    except Exception as exc:
        if debug:
            raise
        code = _error(f"internal error ({type(exc).__name__}: {exc}); this is a bug in charlm, "
                      "please report it with the output of CHARLM_DEBUG=1", 1)
    sys.exit(code if isinstance(code, int) else 0)
