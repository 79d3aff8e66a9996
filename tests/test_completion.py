"""Shell completion as typer provides it: --install-completion and --show-completion, and the
completions themselves (commands, options, choices)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def charlm(*args, **env):
    """charlm ARGS in a fresh interpreter with env added -> CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "charlm", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60,
                          env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
                               **env})


def complete(words, shell="bash"):
    """What the shell's completion function would offer after `words` (the last may be '')."""
    parts = words.split(" ")
    return charlm(_CHARLM_COMPLETE=f"complete_{shell}", COMP_WORDS=words,
                  COMP_CWORD=str(len(parts) - 1), _TYPER_COMPLETE_ARGS=words)


def test_help_offers_completion():
    result = charlm("--help")
    assert result.returncode == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_show_completion_prints_the_script_for_a_shell():
    result = charlm("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "_CHARLM_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _charlm_completion charlm" in result.stdout


def test_commands_options_and_choices_complete():
    assert complete("charlm tr").stdout.split() == ["train"]
    assert complete("charlm pl").stdout.split() == ["plot"]
    assert complete("charlm train x --ce").stdout.split() == ["--cell"]
    assert complete("charlm train x --cell ").stdout.split() == ["rnn", "lstm", "gru", "ngram"]
    assert complete("charlm plot x --x ").stdout.split() == ["steps", "seconds"]


def test_install_completion_writes_the_script_under_home(tmp_path):
    result = charlm("--install-completion", "bash", HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "charlm.sh"
    assert "_CHARLM_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
