"""Expected failures, each with the exit code the CLI returns for it.

Exit-code contract (documented in the README):
    0 success · 1 internal error (a bug) · 2 usage error · 3 input error (corpus, text, prime)
    4 checkpoint error · 5 output error (cannot write) · 6 training diverged
    130 / 143 interrupted by SIGINT / SIGTERM after saving
"""

import os
import signal
import sys


class CharlmError(Exception):
    """An expected failure: the CLI prints it as one line and exits with exit_code."""

    exit_code = 1


class UsageError(CharlmError):
    """An option value or combination that cannot work."""

    exit_code = 2


class CorpusError(CharlmError):
    """The corpus, prime or evaluation text cannot be used as given."""

    exit_code = 3


class CheckpointError(CharlmError):
    """A checkpoint is missing, unreadable, unsafe or incompatible."""

    exit_code = 4


class OutputError(CharlmError):
    """Something charlm had to write could not be written."""

    exit_code = 5


class DivergedError(CharlmError):
    """Training produced non-finite values for too many steps in a row."""

    exit_code = 6


def one_line(text):
    """str(text) squeezed onto one line: every message charlm prints is a single line."""
    return " ".join(str(text).split())


def die_by_signal(signum):
    """End the process by the signal itself, so the shell sees 128 + signum (130, 143) and a
    calling script stops too."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
