"""Fine-tuning (`charlm train NEW --init-from CKPT`): the vocabulary grows without remapping,
every old row is carried over bit for bit, new rows start fresh, the architecture comes from
the checkpoint, and options that contradict it are one-line errors."""

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

from charlm.data import text
from charlm.io import checkpoint
from charlm.train import session

OLD_TEXT = "the quick brown fox jumps over the lazy dog. " * 40
# new characters (digits, brackets, a CJK one) and old ones the new text never uses
NEW_TEXT = "print(x[0]) {a: 1} # 2 + 3 = 5; the fox 狐 " * 30
SMALL = ("--hidden", 16, "--steps", 4, "--batch-size", 4, "--seq-len", 16, "--quiet")
LAYOUTS = {"one-hot, full softmax": (),
           "embedding, full softmax": ("--embed", 6),
           "one-hot, adaptive softmax": ("--softmax", "adaptive", "--cutoffs", "4,12",
                                         "--div-value", 2),
           "embedding, adaptive softmax": ("--embed", 6, "--softmax", "adaptive",
                                           "--cutoffs", "4,12", "--div-value", 2)}


@pytest.fixture
def texts(tmp_path):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text(OLD_TEXT, encoding="utf-8")
    new.write_text(NEW_TEXT, encoding="utf-8")
    return old, new


def _base(capfd, old, tmp_path, *options):
    out = tmp_path / "base"
    code, _, err = run(capfd, "train", old, "--layers", 2, *SMALL, *options, "--out", out)
    assert code == 0, err
    return out / "best.npz"


def _plan(new, base, out, given=None, limits=None, small=True):
    corpus = text.read_corpus([new])
    given = ({"batch_size": 4, "seq_len": 16} if small else {}) | (given or {})
    return session.plan(corpus, [new], given, limits or {}, out, None, base)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_old_rows_are_bitwise_unchanged_before_the_first_step(layout, texts, tmp_path, capfd):
    old, new = texts
    base_path = _base(capfd, old, tmp_path, *LAYOUTS[layout])
    base = checkpoint.load(base_path)
    old_params = {k[len("params/"):]: v for k, v in base.arrays.items()
                  if k.startswith("params/")}
    plan = _plan(new, base_path, tmp_path / "tuned")
    trainer, _ = session.start(plan)
    V, V_new = base.vocab.size, trainer.vocab.size
    added = set(NEW_TEXT) - set(OLD_TEXT)
    assert V_new == V + len(added)
    assert np.array_equal(trainer.vocab.codepoints[:V], base.vocab.codepoints)   # ids kept
    assert {trainer.vocab.char(i) for i in range(V, V_new)} == added
    grown = set()
    for name, value in old_params.items():
        now = trainer.params[name]
        block = now[tuple(slice(0, n) for n in value.shape)]
        assert block.tobytes() == value.tobytes(), name                # bit for bit
        if now.shape != value.shape:
            grown.add(name)
            fresh = np.delete(now, np.s_[:value.shape[0]], axis=0) if now.shape[0] > \
                value.shape[0] else now[:, value.shape[1]:]
            assert fresh.size and (np.any(fresh) or name == "head.bias"), name
    vocab_rows = {"embed.weight"} if "--embed" in LAYOUTS[layout] else {"rnn.weight_ih_l0"}
    vocab_rows |= {"tail.1.1.weight"} if "adaptive" in layout else {"head.weight", "head.bias"}
    assert grown == vocab_rows                                       # and nothing else grew
    assert trainer.mcfg.cutoffs == checkpoint.model_config_from(base.config).cutoffs


def test_a_fine_tuned_run_saves_the_grown_vocabulary_and_resumes(texts, tmp_path, capfd):
    old, new = texts
    base_path = _base(capfd, old, tmp_path, "--softmax", "adaptive", "--cutoffs", "4,12",
                      "--div-value", 2)
    out = tmp_path / "tuned"
    code, _, err = run(capfd, "train", new, "--init-from", base_path, "--steps", 3,
                       "--batch-size", 4, "--seq-len", 16, "--quiet", "--out", out)
    assert code == 0, err
    assert "get the new ids" in err
    tuned, base = checkpoint.load(out / "last.npz"), checkpoint.load(base_path)
    assert np.array_equal(tuned.vocab.codepoints[:base.vocab.size], base.vocab.codepoints)
    assert tuned.config["train"]["init_from"] == str(base_path)
    assert tuned.config["progress"]["step"] == 3                     # a new run, from 0
    code, _, err = run(capfd, "train", new, "--resume", out / "last.npz", "--steps", 5,
                       "--quiet")
    assert code == 0, err
    assert checkpoint.load(out / "last.npz").vocab == tuned.vocab
    code, out_text, err = run(capfd, "sample", out / "best.npz", "--prime", "print(",
                              "--length", 20, "--seed", 1)
    assert code == 0, err


def test_the_architecture_comes_from_the_checkpoint(texts, tmp_path, capfd):
    old, new = texts
    base_path = _base(capfd, old, tmp_path, "--embed", 6, "--dropout", 0.1)
    new.write_text(NEW_TEXT * 3, encoding="utf-8")     # room for the default batch
    plan = _plan(new, base_path, tmp_path / "tuned", {"lr": 1e-3}, {"time_budget": 30.0},
                 small=False)
    assert (plan.tcfg.cell, plan.tcfg.layers, plan.tcfg.hidden, plan.tcfg.embed) == (
        "gru", 2, 16, 6)
    assert plan.tcfg.dropout == 0.1 and plan.tcfg.lr == 1e-3
    assert not plan.auto_size                          # a time budget does not resize it
    assert _plan(new, base_path, tmp_path / "tuned", {"hidden": 16}).tcfg.hidden == 16
    assert plan.base is not None and plan.resume is None


@pytest.mark.parametrize("options,fragment", [
    (("--cell", "lstm"), "--cell lstm (the model: gru)"),
    (("--hidden", 32, "--layers", 1), "--layers 1 (the model: 2), --hidden 32 (the model: 16)"),
    (("--embed", 4), "--embed 4 (the model: 0)"),
    (("--softmax", "adaptive"), "--softmax adaptive (the model: full)"),
])
def test_options_that_contradict_the_checkpoint_are_refused(options, fragment, texts,
                                                            tmp_path, capfd):
    old, new = texts
    base_path = _base(capfd, old, tmp_path)
    out = tmp_path / "tuned"
    code, _, err = run(capfd, "train", new, "--init-from", base_path, *options, "--out", out)
    assert_one_line_error(err, code, 2, fragment, "drop these options")
    assert not out.exists()


def test_init_from_what_cannot_be_fine_tuned_is_refused(texts, tmp_path, capfd):
    old, new = texts
    base_path = _base(capfd, old, tmp_path)
    code, _, err = run(capfd, "train", old, "--cell", "ngram", "--out", tmp_path / "ng")
    assert code == 0, err
    cases = [(("--init-from", tmp_path / "ng" / "best.npz"), 2, "is an n-gram model"),
             (("--init-from", base_path.parent), 4, "is a directory"),
             (("--init-from", base_path, "--resume", base_path.parent / "last.npz"), 2,
              "give one of them"),
             (("--init-from", base_path, "--cell", "ngram"), 2, "drop --init-from")]
    for options, exit_code, fragment in cases:
        code, _, err = run(capfd, "train", new, *options, "--out", tmp_path / "x")
        assert_one_line_error(err, code, exit_code, fragment)
