"""Shared fixtures: small local texts only; the benchmark corpus is optional."""

from pathlib import Path

import pytest

from charlm.cli import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_CORPUS = SHARED / "corpora" / "tinyshakespeare.txt"

SMALL_TEXT = (
    "The quick brown fox jumps over the lazy dog.\n"
    "A stitch in time saves nine; a rolling stone gathers no moss.\n"
    "Every cloud has a silver lining, and every dog has its day.\n"
) * 20


def run(capfd, *args):
    """charlm ARGS in-process -> (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capfd.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """A few kilobytes of plain English written for the tests."""
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def tiny_shakespeare() -> Path:
    """The shared benchmark corpus; tests that need it skip where it is absent."""
    if not SHARED_CORPUS.is_file():
        pytest.skip("../shared/corpora/tinyshakespeare.txt is not present")
    return SHARED_CORPUS
