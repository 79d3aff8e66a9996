"""The commands as a user types them: results, exit codes and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run

from charlm.io import checkpoint

REPO = Path(__file__).resolve().parents[1]


def assert_one_line_error(err, code, expected_code, *fragments):
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def trained(small_corpus, tmp_path, capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, "--cell", "gru", "--layers", "1",
                       "--hidden", "16", "--steps", "12", "--batch-size", "4", "--seq-len", "16",
                       "--out", out, "--quiet")
    assert code == 0, err
    return out


def test_train_writes_checkpoints_metrics_and_a_summary(trained, capfd):
    assert {p.name for p in trained.iterdir()} >= {"last.npz", "best.npz", "metrics.jsonl"}
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "event" not in r]
    assert validations[-1]["step"] == 12 and validations[-1]["val_loss"] > 0
    assert records[-1]["event"] == "mixture" and records[-1]["mix_val"] > 0
    ckpt = checkpoint.load(trained / "best.npz")
    vocab = ckpt.vocab
    assert ckpt.config["progress"]["step"] == 12 and vocab.size > 10


def test_sample_is_deterministic_under_a_seed_and_counts_generated_characters(trained, capfd):
    args = ("sample", trained / "best.npz", "--prime", "The ", "--length", "40", "--seed", "3")
    code1, out1, _ = run(capfd, *args)
    code2, out2, _ = run(capfd, *args)
    assert code1 == code2 == 0
    assert out1 == out2
    assert out1.startswith("The ") and len(out1.rstrip("\n")) >= 40   # 4 prime + 40 generated
    assert len(out1) == len("The ") + 40 + 1
    code3, out3, _ = run(capfd, "sample", trained / "best.npz", "--length", "40", "--seed", "4")
    assert code3 == 0 and out3 != out1


def test_greedy_sampling_is_deterministic_without_a_seed(trained, capfd):
    a = run(capfd, "sample", trained / "best.npz", "--temperature", "0", "--length", "30")
    b = run(capfd, "sample", trained / "best.npz", "--temperature", "0", "--length", "30")
    assert a[0] == 0 and a[1] == b[1]


def test_eval_json_and_compare(trained, small_corpus, capfd):
    code, out, _ = run(capfd, "eval", "perplexity", trained / "best.npz", small_corpus, "--json")
    result = json.loads(out)
    assert code == 0
    assert result["chars"] == len(small_corpus.read_text()) - 1
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / np.log(2))
    assert result["perplexity"] == pytest.approx(np.exp(result["nats_per_char"]))
    code, out, _ = run(capfd, "eval", "perplexity", trained / "best.npz", small_corpus,
                       "--compare", trained / "last.npz", "--json")
    rows = json.loads(out)
    assert code == 0 and [Path(r["checkpoint"]).name for r in rows] == ["best.npz", "last.npz"]


def test_eval_split_val_equals_the_training_validation_loss(trained, small_corpus, capfd):
    code, out, _ = run(capfd, "eval", "perplexity", trained / "last.npz", "--corpus",
                       small_corpus, "--split", "val", "--streams", "16", "--json")
    ckpt = checkpoint.load(trained / "last.npz")
    assert code == 0
    assert json.loads(out)["nats_per_char"] == pytest.approx(ckpt.config["progress"]["last_val"],
                                                             rel=1e-12)


def test_a_split_of_another_text_comes_with_a_note(trained, small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "eval", "perplexity", trained / "last.npz", "--corpus",
                       small_corpus, "--split", "val")
    assert code == 0 and "note:" not in err
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    code, _, err = run(capfd, "eval", "perplexity", trained / "last.npz", "--corpus", other,
                       "--split", "val")
    assert code == 0 and "trained on a different text" in err


def test_compare_with_unknown_skip_counts_each_models_skipped_characters(trained, small_corpus,
                                                                        tmp_path, capfd):
    """Each model has its own vocabulary, so each row says how many characters it skipped."""
    text = tmp_path / "euro.txt"
    text.write_text(small_corpus.read_text(encoding="utf-8") + "€€€", encoding="utf-8")
    euro = tmp_path / "euro-run"
    code, _, err = run(capfd, "train", text, "--cell", "ngram", "--order", "3", "--out", euro)
    assert code == 0, err
    args = ("eval", "perplexity", trained / "last.npz", text, "--compare", euro / "last.npz",
            "--unknown", "skip")
    code, out, err = run(capfd, *args, "--json")
    assert code == 0, err
    assert [r["skipped"] for r in json.loads(out)] == [3, 0]
    code, out, err = run(capfd, *args)
    assert code == 0, err
    gru = next(line for line in out.splitlines() if "GRU" in line)
    ngram = next(line for line in out.splitlines() if "Kneser-Ney" in line)
    assert gru.rstrip(" │").endswith(" 3") and ngram.rstrip(" │").endswith(" 0"), out


def test_streams_give_nearly_the_same_score(trained, small_corpus, capfd):
    one = json.loads(run(capfd, "eval", "perplexity", trained / "last.npz", small_corpus,
                         "--json")[1])
    many = json.loads(run(capfd, "eval", "perplexity", trained / "last.npz", small_corpus,
                          "--json", "--streams", "4")[1])
    assert one["chars"] == many["chars"]
    assert abs(one["nats_per_char"] - many["nats_per_char"]) < 0.05


def test_unknown_characters(trained, tmp_path, capfd):
    code, _, err = run(capfd, "sample", trained / "best.npz", "--prime", "The €")
    assert_one_line_error(err, code, 3, "U+20AC", "--unknown skip")
    code, out, err = run(capfd, "sample", trained / "best.npz", "--prime", "The €", "--unknown",
                         "skip", "--length", "5", "--seed", "1")
    assert code == 0 and out.startswith("The ")
    assert "skipped 1 character of --prime" in err
    text = tmp_path / "odd.txt"
    text.write_text("The dog €€ barks")
    code, _, err = run(capfd, "eval", "perplexity", trained / "best.npz", text)
    assert_one_line_error(err, code, 3, "U+20AC")
    code, out, _ = run(capfd, "eval", "perplexity", trained / "best.npz", text, "--unknown",
                       "skip", "--json")
    assert code == 0 and json.loads(out)["skipped"] == 2
    assert json.loads(out)["chars"] == len("The dog  barks") - 1


def test_every_command_that_suggests_encoding_errors_accepts_it(trained, tmp_path, capfd):
    text = tmp_path / "latin1.txt"
    text.write_bytes("The caf\u00e9 dog barks".encode("latin-1"))
    ckpt = trained / "best.npz"
    for command, options in (
            (("eval", "perplexity", ckpt, text), ("--unknown", "skip")),
            (("eval", "perplexity", ckpt, "--corpus", text, "--split", "all"),
             ("--unknown", "skip")),
            (("corpus", "stats", text), ())):
        code, _, err = run(capfd, *command)
        assert_one_line_error(err, code, 3, "not valid UTF-8", "--encoding-errors replace")
        code, out, err = run(capfd, *command, *options, "--encoding-errors", "replace", "--json")
        assert code == 0, err
        report = json.loads(out)
        if command[0] == "eval":            # the replacement character is outside the vocabulary
            assert report["skipped"] == 1 and report["chars"] == len("The caf dog barks") - 1
        else:
            assert report["chars"] == len("The caf\ufffd dog barks")


def test_patience_stops_a_run_that_stopped_improving_and_says_so(small_corpus, tmp_path, capfd):
    # at this learning rate no update moves a float32 weight, so no evaluation improves on the first
    code, _, err = run(capfd, "train", small_corpus, "--layers", "1", "--hidden", "8",
                       "--batch-size", "2", "--seq-len", "8", "--steps", "50", "--lr", "1e-30",
                       "--eval-every", "5", "--patience", "2", "--out", tmp_path / "run",
                       "--quiet")
    assert code == 0, err
    assert "stopping early at step 15: validation loss not improved for 2 evaluations" in err
    assert checkpoint.load(tmp_path / "run" / "last.npz").config["progress"]["step"] == 15


def test_progress_into_a_file_is_one_line_per_validation(small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--layers", "1", "--hidden", "8",
                       "--batch-size", "2", "--seq-len", "8", "--steps", "12",
                       "--eval-every", "4", "--out", tmp_path / "run")
    assert code == 0, err
    assert "\r" not in err                   # no redrawn bar in a log
    progress = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split(",")[0] for line in progress] == [f"step {n} of 12" for n in (4, 8, 12)]
    assert all("val " in line and "chars/s" in line for line in progress)


def test_every_command_reading_a_directory_warns_of_the_files_it_skips(trained, small_corpus,
                                                                       tmp_path, capfd):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(Path(small_corpus).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    for args in (("corpus", "stats", folder),
                 ("eval", "perplexity", trained / "best.npz", "--corpus", folder)):
        code, _, err = run(capfd, *args)
        assert code == 0, err
        assert "warning:" in err and "image.bin" in err, (args, err)


def test_info(trained, capfd):
    code, out, _ = run(capfd, "info", trained / "best.npz", "--json")
    report = json.loads(out)
    assert code == 0 and report["model"]["cell"] == "gru" and report["step"] == 12
    assert report["parameters"] > 0 and report["vocab_size"] > 10
    code, out, _ = run(capfd, "info", trained / "best.npz")
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.splitlines() if line.count("│") == 3}
    assert code == 0 and rows["model.hidden"] == "16" and rows["train.steps"] == "12"
    assert rows["train.patience"] == "off" and rows["train.eval_every"] == "default"
    assert "train.hidden" not in rows and "model.activation" not in rows   # shown once; GRU


def test_refuses_to_overwrite_a_run_without_force(trained, small_corpus, capfd):
    before = (trained / "best.npz").read_bytes()
    code, _, err = run(capfd, "train", small_corpus, "--out", trained, "--steps", "2")
    assert_one_line_error(err, code, 2, "--resume", "--force")
    assert (trained / "best.npz").read_bytes() == before


def test_resume_continues_to_the_same_end(trained, small_corpus, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz",
                       "--steps", "15", "--quiet")
    assert code == 0, err
    assert err.startswith("resuming at step 12: training a 1-layer GRU")
    assert checkpoint.load(trained / "last.npz").config["progress"]["step"] == 15
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz",
                       "--hidden", "32", "--steps", "20")
    assert_one_line_error(err, code, 2, "--hidden 32")
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz",
                       "--steps", "15", "--quiet")
    assert code == 0 and "already complete" in err


def test_a_spent_time_budget_resumes_as_complete_and_a_larger_one_extends(small_corpus,
                                                                          tmp_path, capfd):
    out = tmp_path / "budget"
    args = ("train", small_corpus, "--hidden", "16", "--layers", "1", "--seq-len", "16",
            "--batch-size", "4", "--eval-chars", "200", "--out", out, "--quiet")
    code, _, err = run(capfd, *args, "--time-budget", "1")
    assert code == 0, err
    steps = checkpoint.load(out / "last.npz").config["progress"]["step"]
    code, _, err = run(capfd, *args, "--time-budget", "1", "--resume", out / "last.npz")
    assert code == 0 and f"already complete at step {steps}" in err
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] == steps
    code, _, err = run(capfd, *args, "--time-budget", "2", "--resume", out / "last.npz")
    assert code == 0, err
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] > steps


@pytest.mark.parametrize("args,expected_code,fragment", [
    (("sample", "{ckpt}", "--temperature", "nan"), 2, "--temperature"),
    (("sample", "{ckpt}", "--temperature", "inf"), 2, "--temperature"),
    (("sample", "{ckpt}", "--temperature", "-1"), 2, "--temperature"),
    (("sample", "{ckpt}", "--top-p", "0"), 2, "--top-p"),
    (("sample", "{ckpt}", "--length", "-3"), 2, "--length"),
    (("train", "{corpus}", "--hidden", "0"), 2, "--hidden"),
    (("train", "{corpus}", "--lr", "nan"), 2, "--lr"),
    (("train", "{corpus}", "--lr", "-1"), 2, "--lr"),
    (("train", "{corpus}", "--clip-norm", "0"), 2, "--clip-norm"),
    (("train", "{corpus}", "--val-frac", "1.5"), 2, "--val-frac"),
    (("train", "{corpus}", "--cell", "transformer"), 2, "--cell"),
    (("train", "{missing}"), 3, "missing.txt"),
    (("train", "{empty}"), 3, "empty"),
    (("train", "{corpus}", "--batch-size", "500", "--seq-len", "64", "--out", "{out}"), 3,
     "--batch-size"),
    (("sample", "{missing}"), 4, "missing.txt"),
    (("sample", "{corpus}"), 4, "RUN_DIR/best.npz"),
    (("sample", "{run}"), 4, "run/best.npz"),
    (("eval", "perplexity", "{ckpt}"), 2, "nothing to score"),
])
def test_bad_input_gets_one_line_and_an_exit_code(trained, small_corpus, tmp_path, capfd, args,
                                                   expected_code, fragment):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    names = {"ckpt": trained / "best.npz", "corpus": small_corpus, "run": trained,
             "missing": tmp_path / "missing.txt", "empty": empty, "out": tmp_path / "o"}
    code, _, err = run(capfd, *[a.format(**{k: str(v) for k, v in names.items()}) for a in args])
    assert_one_line_error(err, code, expected_code, fragment)


def test_python_dash_m_and_help_work():
    result = subprocess.run([sys.executable, "-m", "charlm", "--help"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0
    for command in ("train", "sample", "eval", "info"):
        assert command in result.stdout


def _start_training(corpus, out):
    text = corpus.read_text() * 20
    big = corpus.parent / "big.txt"
    big.write_text(text)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "charlm", "train", str(big), "--out", str(out), "--steps", "100000",
         "--hidden", "32", "--layers", "1", "--eval-every", "5", "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_then_exits_with_the_signal_status(small_corpus, tmp_path, signum, status):
    out = tmp_path / "sig"
    proc = _start_training(small_corpus, out)
    deadline = time.time() + 60
    while not (out / "last.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum, err        # died by the signal: the shell shows `status`
    assert 128 + signum == status
    assert "continue with --resume" in err and "Traceback" not in err
    ckpt = checkpoint.load(out / "last.npz")
    assert ckpt.config["progress"]["step"] > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_version_and_the_prime_named_in_its_error(trained, capfd):
    from charlm import __version__
    code, out, _ = run(capfd, "--version")
    assert code == 0 and out.strip() == f"charlm {__version__}"
    code, _, err = run(capfd, "sample", trained / "best.npz", "--prime", "The café €")
    assert_one_line_error(err, code, 3, "--prime has 2 character(s) outside the model's")
    code, out, _ = run(capfd, "info", trained / "last.npz")
    assert f"charlm {__version__}, checkpoint format 1" in out
    code, out, _ = run(capfd, "info", trained / "best.npz")
    assert "checkpoint format 2, the weights only" in out


def test_a_terminal_without_a_width_gets_the_line_mode(monkeypatch):
    """Under `script` or some CI consoles the terminal says 0 x 0: a bar would draw nothing,
    so training writes its one line per validation there too."""
    from charlm.cli import train_view
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((0, 0)))
    assert not train_view._can_draw_a_bar()
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((80, 24)))
    assert train_view._can_draw_a_bar()


def test_best_is_the_weights_alone_and_resumes_point_at_last(trained, small_corpus, capfd):
    import zipfile
    best = {n[:-len(".npy")] for n in zipfile.ZipFile(trained / "best.npz").namelist()}
    last = {n[:-len(".npy")] for n in zipfile.ZipFile(trained / "last.npz").namelist()}
    assert not any(k.startswith(("optim/", "state/")) for k in best)
    assert best == {k for k in last if not k.startswith(("optim/", "state/"))}
    assert (trained / "best.npz").stat().st_size < (trained / "last.npz").stat().st_size / 2
    for args in (("sample", trained / "best.npz", "--length", "20", "--seed", "1"),
                 ("eval", "perplexity", trained / "best.npz", small_corpus,
                  "--compare", trained / "last.npz")):
        code, _, err = run(capfd, *args)
        assert code == 0, err
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "best.npz")
    assert_one_line_error(err, code, 2, "weights only", str(trained / "last.npz"))


def test_metrics_open_with_what_auto_size_predicted_and_count_the_characters_seen(
        small_corpus, tmp_path, capfd, monkeypatch):
    # a machine of known speed: on a busy one the real probes can spend the whole 3 s budget,
    # and a prediction of 0 characters is then right
    from charlm.train import autosize
    choose = autosize.choose

    def known_speed(cell, vocab, chars, budget, batch, seq_len, time_step, *rest, **named):
        return choose(cell, vocab, chars, budget, batch, seq_len, lambda l, h: 1e-3 * l * h / 128,
                      *rest, **named)
    monkeypatch.setattr(autosize, "choose", known_speed)
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, "--time-budget", "3", "--out", out,
                       "--quiet")
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    opening, validations = records[0], [r for r in records[1:] if "event" not in r]
    assert opening["event"] == "start" and opening["at_step"] == 0
    choice = opening["auto_size"]
    assert choice["predicted_chars"] > 0 and f"{choice['layers']}x{choice['hidden']}" in err
    last = validations[-1]
    assert last["chars_seen"] == last["step"] * 32 * 64        # the default batch x unroll
