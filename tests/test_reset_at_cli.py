"""`charlm train --reset-at` as a user types it: stored in the checkpoint, used by eval and
sample, kept on resume, refused where it cannot mean anything."""

import json

import pytest
from test_cli import assert_one_line_error, run

from charlm.io import checkpoint

DOCS = ["the quick brown fox", "a lazy dog sleeps", "every cloud has a silver lining",
        "a stitch in time saves nine", "the dog jumps over the fox"] * 12
SEP = "\n%\n"


@pytest.fixture
def documents(tmp_path):
    path = tmp_path / "fortunes.txt"
    path.write_text(SEP.join(DOCS) + SEP, encoding="utf-8")
    return path


@pytest.fixture
def trained(documents, tmp_path, capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", documents, "--reset-at", r"\n%\n", "--layers", 1,
                       "--hidden", 16, "--steps", 8, "--batch-size", 4, "--seq-len", 16,
                       "--out", out, "--quiet")
    assert code == 0, err
    return out


def _nats(capfd, ckpt, path):
    code, out, err = run(capfd, "eval", "perplexity", ckpt, path, "--json")
    assert code == 0, err
    report = json.loads(out)
    return report["nats_per_char"] * report["chars"]


def test_the_separator_is_kept_in_the_checkpoint(trained, capfd):
    for name in ("last.npz", "best.npz"):
        loaded = checkpoint.load(trained / name)
        assert loaded.config["model"]["reset_at"] == SEP
        assert loaded.format_version == checkpoint.RESET_VERSION
    code, out, err = run(capfd, "info", trained / "best.npz")
    assert code == 0 and "restarts after '\\n%\\n'" in out, err


def test_eval_scores_two_documents_as_each_alone(trained, tmp_path, capfd):
    """score(A + sep + B) = score(A + sep) + score(sep[-1] + B) (charlm.nn.resets)."""
    texts = {"both": f"{DOCS[0]}{SEP}{DOCS[2]}", "first": f"{DOCS[0]}{SEP}",
             "second": f"{SEP[-1]}{DOCS[2]}"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    nats = {name: _nats(capfd, trained / "best.npz", tmp_path / name) for name in texts}
    assert nats["both"] == pytest.approx(nats["first"] + nats["second"], rel=1e-6)


def test_sample_restarts_too(trained, capfd):
    code, out, err = run(capfd, "sample", trained / "best.npz", "--length", 60, "--seed", 1)
    assert code == 0 and len(out) >= 60, err


def test_resume_keeps_the_separator_and_refuses_another(trained, documents, capfd):
    code, _, err = run(capfd, "train", documents, "--resume", trained / "last.npz",
                       "--steps", 10, "--quiet")
    assert code == 0, err
    assert checkpoint.load(trained / "last.npz").config["model"]["reset_at"] == SEP
    code, _, err = run(capfd, "train", documents, "--resume", trained / "last.npz",
                       "--steps", 12, "--reset-at", r"\n", "--quiet")
    assert_one_line_error(err, code, 2, "--reset-at")


@pytest.mark.parametrize("args,fragment", [
    (("--reset-at", r"\n\n"), "never occurs in the corpus"),
    (("--reset-at", r"a\q"), "unknown escape"),
    (("--cell", "ngram", "--reset-at", r"\n"), "n-gram model does not restart"),
])
def test_a_separator_that_cannot_work_is_refused(documents, tmp_path, capfd, args, fragment):
    code, _, err = run(capfd, "train", documents, *args, "--steps", 2, "--out", tmp_path / "x")
    assert_one_line_error(err, code, 2, fragment)
    assert not (tmp_path / "x").exists()


def test_a_separator_needs_format_4(trained, tmp_path, capfd):
    """A file of an older format that claims a separator is refused as corrupt, as is a
    separator with a character the vocabulary lacks."""
    from charlm.io import npz
    loaded = checkpoint.load(trained / "best.npz")
    for version, reset_at, fragment in ((3, SEP, "'reset_at' needs format 4"),
                                        (4, "\n#\n", "outside the vocabulary"),
                                        (4, 7, "'reset_at' has an invalid value")):
        config = json.loads(json.dumps(loaded.config))
        config["model"]["reset_at"] = reset_at
        bad = tmp_path / "bad.npz"
        npz.save_checkpoint(bad, dict(loaded.arrays), config, version)
        code, _, err = run(capfd, "info", bad)
        assert_one_line_error(err, code, 4, fragment)


def test_training_restarts_each_stream_where_the_separator_ends(documents, tmp_path):
    """A training step's loss is the model's with the state zeroed wherever the text read so
    far ends with the separator (found here by reading the text), and differs without."""
    import numpy as np

    from charlm.data import text
    from charlm.nn import model
    from charlm.train import session
    corpus = text.read_corpus([documents])
    given = {"reset_at": SEP, "batch_size": 4, "seq_len": 16, "hidden": 8, "layers": 1,
             "state_reset": 0.0}
    trainer, _ = session.start(session.plan(corpus, [documents], given, {"steps": 3},
                                            tmp_path / "run"))
    chars = trainer.vocab.decode(trainer.train_ids)
    for window in range(3):
        positions = trainer.batches.positions(window)
        restart = np.vectorize(lambda i: chars[:i + 1].endswith(SEP))(positions)
        assert restart.any()
        x, y = trainer.batches[window]
        state = [tuple(a.copy() for a in layer) for layer in trainer.state]
        _, grads = model.allocate(model.param_shapes(trainer.mcfg))
        losses = [model.loss_and_grads(trainer.params, trainer.mcfg, x, y, state, grads,
                                       keep=keep)[0] / y.size
                  for keep in (np.logical_not(restart)[:, None, :].astype(np.float32), None)]
        step_loss, _ = trainer.train_step()
        assert step_loss == losses[0] != losses[1]


def test_export_and_import_keep_the_separator(trained, tmp_path, capfd):
    exported, imported = tmp_path / "model.safetensors", tmp_path / "imported.npz"
    code, _, err = run(capfd, "export", trained / "best.npz", "--out", exported)
    assert code == 0, err
    code, _, err = run(capfd, "import", exported, "--out", imported)
    assert code == 0, err
    loaded = checkpoint.load(imported)
    assert loaded.config["model"]["reset_at"] == SEP
    assert loaded.format_version == checkpoint.RESET_VERSION
