"""The bidirectional model as a model of charlm: training, its checkpoint (format 4 only for
it), the strict loader, auto-size's doubled cost, and the commands that refuse it."""

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

from charlm import lm
from charlm.errors import CheckpointError
from charlm.io import checkpoint
from charlm.train import autosize


@pytest.fixture(scope="module")
def bi_run(tmp_path_factory):
    from conftest import SMALL_TEXT

    from charlm.cli import main
    out = tmp_path_factory.mktemp("bi")
    corpus = out / "small.txt"
    corpus.write_text(SMALL_TEXT, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(corpus), "--bidirectional", "--layers", "2",
              "--hidden", "8", "--steps", "6", "--seq-len", "8", "--batch-size", "4",
              "--out", str(out / "run"), "--quiet"])
    assert exit_info.value.code == 0
    return out / "run"


def test_training_writes_format_4_with_the_reverse_stack(bi_run):
    model = lm.load(bi_run / "best.npz")
    assert model.format_version == checkpoint.BIDIRECTIONAL_VERSION
    assert model.describe() == "2x8 bidirectional GRU"
    assert model.params["head.weight"].shape[1] == 16
    assert "rnn.weight_ih_l1_reverse" in model.params
    last = checkpoint.load(bi_run / "last.npz")
    assert last.format_version == checkpoint.BIDIRECTIONAL_VERSION
    assert {k for k in last.arrays if k.startswith("state/")} == {"state/l0.h", "state/l1.h"}


def test_a_left_to_right_model_keeps_its_older_format(small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--steps", "2", "--hidden", "8",
                       "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert checkpoint.load(tmp_path / "r" / "last.npz").format_version == 1


@pytest.mark.parametrize("command", [["sample"], ["eval", "perplexity"]])
def test_sample_and_perplexity_point_to_fill_and_cloze(bi_run, small_corpus, capfd, command):
    args = [*command, bi_run / "best.npz"] + ([small_corpus] if command[0] == "eval" else [])
    code, _, err = run(capfd, *args)
    assert_one_line_error(err, code, 2, "bidirectional", "charlm fill", "charlm eval cloze")


def _config(**model):
    section = {"cell": "gru", "vocab_size": 20, "hidden": 8, "layers": 2,
               "activation": "tanh", "dropout": 0.0, "bidirectional": True} | model
    return {"kind": checkpoint.KIND, "model": section,
            "train": {"optimizer": "sgd", "batch_size": 1}, "progress": {}, "weights_only": True}


def test_the_schema_ties_the_reverse_shapes_to_the_config():
    members = checkpoint.schema(_config(), checkpoint.BIDIRECTIONAL_VERSION)
    assert members["params/rnn.weight_ih_l0_reverse"] == ("<f4", (24, 20))
    assert members["params/rnn.weight_ih_l1_reverse"] == ("<f4", (24, 8))
    assert members["params/head.weight"] == ("<f4", (20, 16))
    plain = checkpoint.schema(_config(bidirectional=False), 2)
    assert "params/rnn.weight_ih_l0_reverse" not in plain
    assert plain["params/head.weight"] == ("<f4", (20, 8))


@pytest.mark.parametrize("model, version, fragment", [
    ({}, 4, "'bidirectional' needs format 5"),
    ({"bidirectional": 1}, 5, "bidirectional"),
    ({"bidirectional": "yes"}, 5, "bidirectional"),
])
def test_the_loader_refuses_an_invalid_bidirectional_config(model, version, fragment):
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.schema(_config(**model), version)


def test_resume_refuses_a_different_direction(bi_run, small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--resume", bi_run / "last.npz",
                       "--steps", "8", "--out", tmp_path / "x", "--bidirectional")
    assert code == 0, err             # the same setting is no conflict
    plain = tmp_path / "p"
    run(capfd, "train", small_corpus, "--steps", "2", "--hidden", "8", "--out", plain,
        "--quiet")
    code, _, err = run(capfd, "train", small_corpus, "--resume", plain / "last.npz",
                       "--bidirectional", "--steps", "4")
    assert_one_line_error(err, code, 2, "--bidirectional True (checkpoint: False)")


def test_auto_size_counts_both_stacks():
    one = autosize.parameter_count("gru", 60, 2, 128)
    two = autosize.parameter_count("gru", 60, 2, 128, directions=2)
    recurrent = 3 * 128 * (60 + 128 + 2) + 3 * 128 * (2 * 128 + 2)
    assert two - one == recurrent + 60 * 128                 # a second stack, a wider head
    assert autosize.macs_per_char("gru", 60, 2, 128, directions=2) == \
        2 * (3 * 128 * 128 * 3) + 60 * 256
    from charlm.nn.model import ModelConfig, param_shapes
    cfg = ModelConfig("gru", 60, 128, 2, bidirectional=True)
    assert two == sum(int(np.prod(s)) for s in param_shapes(cfg).values())


def test_info_json_names_the_model(bi_run, capfd):
    code, out, err = run(capfd, "info", bi_run / "best.npz", "--json")
    assert code == 0, err
    assert json.loads(out)["model"]["bidirectional"] is True


def test_export_and_import_keep_the_model(bi_run, tmp_path, capfd):
    exported, back = tmp_path / "bi.safetensors", tmp_path / "back.npz"
    code, _, err = run(capfd, "export", bi_run / "best.npz", "--format", "safetensors",
                       "--out", exported)
    assert code == 0, err
    code, _, err = run(capfd, "import", exported, "--out", back)
    assert code == 0, err
    before, after = lm.load(bi_run / "best.npz"), lm.load(back)
    assert after.describe() == before.describe()
    assert after.params.keys() == before.params.keys()
    assert all(np.array_equal(after.params[k], before.params[k]) for k in before.params)


def test_a_pytorch_bidirectional_gru_imports_as_the_cloze_model(tmp_path, capfd):
    """nn.GRU(bidirectional=True) + nn.Linear(2H, V), saved by a PyTorch user, imports with
    the one-step shift's meaning: the same cloze distribution as PyTorch computes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    from charlm.lm import fill as filler
    chars, V, H = "abcdefgh ", 9, 5
    torch.manual_seed(0)
    rnn, head = torch.nn.GRU(V, H, bidirectional=True), torch.nn.Linear(2 * H, V)
    state = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    state |= {f"head.{k}": v for k, v in head.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "theirs.safetensors")
    (tmp_path / "vocab.txt").write_text(chars, encoding="utf-8")
    code, _, err = run(capfd, "import", tmp_path / "theirs.safetensors", "--out",
                       tmp_path / "b.npz", "--vocab", tmp_path / "vocab.txt")
    assert code == 0, err
    model = lm.load(tmp_path / "b.npz")
    assert model.describe() == "1x5 bidirectional GRU"
    ids = model.vocab.encode("bad cafe fade")[0].astype(np.int64)
    ours = filler.cloze_at(model, ids[None, :], np.arange(1, len(ids) - 1))[:, 0]
    with torch.no_grad():
        out, _ = rnn(torch.nn.functional.one_hot(torch.from_numpy(ids), V).float()[:, None])
        rows = torch.cat([out[:-2, 0, :H], out[2:, 0, H:]], -1)     # [h_{t-1}; g_{t+1}]
        theirs = head(rows).log_softmax(-1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_predict_mix_and_adapt_refuse_it(bi_run, small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "predict", bi_run / "best.npz", "--prime", "the")
    assert_one_line_error(err, code, 2, "bidirectional", "charlm fill")
    ngram = tmp_path / "ng"
    code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--out", ngram)
    assert code == 0, err
    code, _, err = run(capfd, "mix", bi_run / "best.npz", ngram / "best.npz", "--out",
                       tmp_path / "m.npz")
    assert_one_line_error(err, code, 2, "bidirectional", "a mixture")
    code, _, err = run(capfd, "eval", "perplexity", bi_run / "best.npz", "--corpus",
                       small_corpus, "--split", "val", "--adapt")
    assert_one_line_error(err, code, 2, "bidirectional", "--adapt")
    assert not (bi_run / "mix.npz").exists() and not (tmp_path / "m.npz").exists()


def test_document_restarts_are_not_for_it(small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--bidirectional", "--reset-at", "\n",
                       "--steps", "2", "--out", tmp_path / "r")
    assert_one_line_error(err, code, 2, "--reset-at", "--bidirectional")
