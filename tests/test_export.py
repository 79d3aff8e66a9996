"""`charlm export` and `charlm import`: safetensors written by charlm's own code, read by the
safetensors package and by PyTorch, and read back by charlm's hardened reader."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpoint import mutate
from test_cli import assert_one_line_error, run

from charlm import lm
from charlm.data.vocab import Vocab, codepoints_of
from charlm.errors import CheckpointError
from charlm.io import checkpoint, safetensors
from charlm.nn import model
from charlm.nn.model import ModelConfig

CHARS = "\n !,.;?AEIOTabcdefghijklmnopqrstuvwxyz"
TEXT = "To be, or not to be; that is the question.\nAnd so it goes, a tale told twice.\n"
DATA = Path(__file__).parent / "data" / "format1"
KINDS = {
    "gru": dict(cell="gru", layers=2, hidden=8),
    "rnn-relu": dict(cell="rnn", layers=1, hidden=6, activation="relu"),
    "lstm-embed-adaptive": dict(cell="lstm", layers=2, hidden=8, embed=5, softmax="adaptive",
                                cutoffs=(6, 20), div_value=2.0),
}


def weights_file(path, seed=0, chars=CHARS, **kind):
    """A best.npz-style checkpoint of random weights (biases too) over chars."""
    rng = np.random.default_rng(seed)
    vocab = Vocab(codepoints_of(chars))
    cfg = ModelConfig(vocab_size=vocab.size, **kind)
    flat, params = model.init_params(cfg, rng)
    flat += (rng.standard_normal(flat.shape) * 0.2).astype(np.float32)
    sections = {"model": cfg.to_dict(), "train": {"optimizer": "adam", "batch_size": 4},
                "progress": {"step": 7}}
    checkpoint.save_weights(path, sections, params, vocab)
    return path


def text_ids(path):
    return lm.load(path).vocab.encode(TEXT)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_export_then_import_is_bitwise(tmp_path, capfd, kind):
    source = weights_file(tmp_path / "best.npz", **KINDS[kind])
    code, out, err = run(capfd, "export", source, "--format", "safetensors",
                         "--out", tmp_path / "m.safetensors")
    assert code == 0 and "wrote" in out, err
    code, out, err = run(capfd, "import", tmp_path / "m.safetensors", "--out", tmp_path / "b.npz")
    assert code == 0 and "wrote" in out, err
    a, b = checkpoint.load(source), checkpoint.load(tmp_path / "b.npz")
    assert a.arrays.keys() == b.arrays.keys()
    for key in a.arrays:
        assert a.arrays[key].dtype == b.arrays[key].dtype, key
        assert a.arrays[key].tobytes() == b.arrays[key].tobytes(), key
    assert a.vocab == b.vocab and a.config == b.config and a.format_version == b.format_version
    ids = text_ids(source)
    assert lm.load(source).score(ids) == lm.load(tmp_path / "b.npz").score(ids)


def test_a_training_checkpoint_exports_its_weights_alone(small_corpus, tmp_path, capfd):
    code, _, err = run(capfd, "train", small_corpus, "--cell", "lstm", "--layers", "1",
                       "--hidden", "8", "--steps", "3", "--batch-size", "2", "--seq-len", "8",
                       "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    last = tmp_path / "run" / "last.npz"
    assert run(capfd, "export", last, "--out", tmp_path / "m.st")[0] == 0
    assert run(capfd, "import", tmp_path / "m.st", "--out", tmp_path / "b.npz")[0] == 0
    a, b = checkpoint.load(last), checkpoint.load(tmp_path / "b.npz")
    params = {k: v for k, v in a.arrays.items() if k.startswith("params/")}
    assert params.keys() | {"meta/vocab"} == b.arrays.keys()
    assert all(np.array_equal(v, b.arrays[k]) for k, v in params.items())
    assert b.config["weights_only"] and b.config["model"] == a.config["model"]


def test_the_file_layout_is_the_safetensors_format(tmp_path):
    source = weights_file(tmp_path / "best.npz", **KINDS["gru"])
    from charlm.io import exchange
    exchange.export(source, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert (8 + n) % 8 == 0                                    # the data starts aligned
    meta = header.pop("__metadata__")
    assert meta["format"] == "pt" and meta["charlm.vocab"] == CHARS
    assert json.loads(meta["charlm.config"])["model"]["cell"] == "gru"
    params = {k[len("params/"):]: v for k, v in checkpoint.load(source).arrays.items()
              if k.startswith("params/")}
    assert header.keys() == params.keys()
    for name, info in header.items():
        begin, end = info["data_offsets"]
        assert info["dtype"] == "F32" and tuple(info["shape"]) == params[name].shape
        assert data[8 + n + begin:8 + n + end] == params[name].astype("<f4").tobytes()


def test_the_safetensors_package_reads_the_export(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors import safe_open
    from safetensors.numpy import load_file
    source = weights_file(tmp_path / "best.npz", **KINDS["lstm-embed-adaptive"])
    assert run_export(source, tmp_path / "m.safetensors") == 0
    tensors = load_file(tmp_path / "m.safetensors")
    loaded = checkpoint.load(source)
    assert {f"params/{k}" for k in tensors} | {"meta/vocab"} == loaded.arrays.keys()
    assert all(np.array_equal(v, loaded.arrays[f"params/{k}"]) for k, v in tensors.items())
    with safe_open(tmp_path / "m.safetensors", "np") as f:
        meta = f.metadata()
    assert meta["charlm.vocab"] == CHARS
    assert json.loads(meta["charlm.config"]) == loaded.config


def run_export(source, out):
    from charlm.io import exchange
    exchange.export(source, out)
    return 0


def torch_nats(torch, state, ids, kind):
    """Summed nats of ids under the PyTorch modules that state (a state_dict) fills."""
    V, F = len(CHARS), torch.nn.functional
    H, L = kind["hidden"], kind["layers"]
    embed = kind.get("embed", 0)
    rnn_class = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind["cell"]]
    extra = {"nonlinearity": kind.get("activation", "tanh")} if kind["cell"] == "rnn" else {}
    rnn = rnn_class(embed or V, H, num_layers=L, **extra)
    rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    x = torch.as_tensor(ids[:-1], dtype=torch.long)
    y = torch.as_tensor(ids[1:], dtype=torch.long)
    if embed:
        emb = torch.nn.Embedding(V, embed)
        emb.load_state_dict({"weight": state["embed.weight"]})
        inputs = emb(x)
    else:
        inputs = F.one_hot(x, V).float()
    with torch.no_grad():
        rows, _ = rnn(inputs[:, None, :])
        rows = rows[:, 0, :]
        if kind.get("softmax") == "adaptive":
            asm = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(kind["cutoffs"]),
                                                      kind["div_value"])
            asm.load_state_dict({k: v for k, v in state.items()
                                 if k.startswith(("head.", "tail."))})
            return float(asm(rows, y).loss) * len(y)
        head = torch.nn.Linear(H, V)
        head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        return float(F.cross_entropy(head(rows), y, reduction="sum"))


@pytest.mark.parametrize("kind", KINDS)
def test_torch_loads_the_export_and_gets_the_same_nats(tmp_path, kind):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file
    source = weights_file(tmp_path / "best.npz", **KINDS[kind])
    run_export(source, tmp_path / "m.safetensors")
    ids = text_ids(source)
    ours, _ = lm.load(source).score(ids)
    theirs = torch_nats(torch, load_file(tmp_path / "m.safetensors"), ids, KINDS[kind])
    assert theirs == pytest.approx(ours, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_pytorch_state_dict_imports_with_a_vocab_file(tmp_path, capfd, kind):
    """What a PyTorch user saves from their own modules becomes a checkpoint with their nats."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file
    settings = KINDS[kind]
    torch.manual_seed(0)
    state = {}
    V, H = len(CHARS), settings["hidden"]
    if settings.get("embed"):
        state |= {"embed.weight": torch.randn(V, settings["embed"])}
    rnn_class = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
    extra = {"nonlinearity": "relu"} if settings["cell"] == "rnn" else {}
    rnn = rnn_class[settings["cell"]](settings.get("embed") or V, H,
                                      num_layers=settings["layers"], **extra)
    state |= {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    if settings.get("softmax") == "adaptive":
        asm = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(settings["cutoffs"]),
                                                  settings["div_value"])
        state |= asm.state_dict()
        options = ["--div-value", str(settings["div_value"])]
    else:
        state |= {f"head.{k}": v for k, v in torch.nn.Linear(H, V).state_dict().items()}
        options = ["--activation", "relu"] if settings["cell"] == "rnn" else []
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "theirs.safetensors")
    (tmp_path / "vocab.txt").write_text(CHARS, encoding="utf-8")
    code, _, err = run(capfd, "import", tmp_path / "theirs.safetensors", "--out",
                       tmp_path / "b.npz", "--vocab", tmp_path / "vocab.txt", *options)
    assert code == 0, err
    imported = lm.load(tmp_path / "b.npz")
    assert imported.describe() == ModelConfig(vocab_size=V, **settings).describe()
    ids = imported.vocab.encode(TEXT)[0]
    assert imported.score(ids)[0] == pytest.approx(torch_nats(torch, state, ids, settings),
                                                   rel=1e-5)


def test_a_file_without_metadata_needs_a_vocab_and_the_options_need_no_metadata(tmp_path,
                                                                                  capfd):
    source = weights_file(tmp_path / "best.npz", **KINDS["gru"])
    params = {k[7:]: v for k, v in checkpoint.load(source).arrays.items()
              if k.startswith("params/")}
    safetensors.write(tmp_path / "bare.st", params, {})
    code, _, err = run(capfd, "import", tmp_path / "bare.st", "--out", tmp_path / "b.npz")
    assert_one_line_error(err, code, 2, "has no charlm metadata", "--vocab FILE")
    run_export(source, tmp_path / "m.st")
    code, _, err = run(capfd, "import", tmp_path / "m.st", "--out", tmp_path / "b.npz",
                       "--activation", "relu")
    assert_one_line_error(err, code, 2, "carries charlm's vocabulary", "--activation")
    (tmp_path / "vocab.txt").write_text(CHARS[:-1], encoding="utf-8")   # one character short
    code, _, err = run(capfd, "import", tmp_path / "bare.st", "--out", tmp_path / "b.npz",
                       "--vocab", tmp_path / "vocab.txt")
    assert_one_line_error(err, code, 4, "rnn.weight_ih_l0", "vocabulary of 37 characters")
    (tmp_path / "vocab.txt").write_text(CHARS, encoding="utf-8")
    for option, fragment in ((["--activation", "relu"], "applies to the plain RNN"),
                             (["--div-value", "2"], "applies to an adaptive softmax")):
        code, _, err = run(capfd, "import", tmp_path / "bare.st", "--out", tmp_path / "b.npz",
                           "--vocab", tmp_path / "vocab.txt", *option)
        assert_one_line_error(err, code, 2, fragment)
    assert not (tmp_path / "b.npz").exists()


def test_an_ngram_model_cannot_be_exported(tmp_path, capfd):
    code, _, err = run(capfd, "export", DATA / "ngram.npz", "--out", tmp_path / "m.st")
    assert_one_line_error(err, code, 2, "n-gram", "only recurrent models")
    assert not (tmp_path / "m.st").exists()


def test_existing_files_are_not_replaced_without_force(tmp_path, capfd):
    source = weights_file(tmp_path / "best.npz", **KINDS["gru"])
    (tmp_path / "m.st").write_text("mine")
    code, _, err = run(capfd, "export", source, "--out", tmp_path / "m.st")
    assert_one_line_error(err, code, 2, "already exists", "--force")
    assert (tmp_path / "m.st").read_text() == "mine"
    assert run(capfd, "export", source, "--out", tmp_path / "m.st", "--force")[0] == 0
    code, _, err = run(capfd, "import", tmp_path / "m.st", "--out", source)
    assert_one_line_error(err, code, 2, "already exists")


# ---- hostile files -----------------------------------------------------------------------------

F32 = np.arange(6, dtype="<f4").tobytes()          # 24 bytes


def raw_file(header, data=F32, length=None):
    """A safetensors file from a header (a dict, or raw bytes) and data, its length field
    given or true."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype="F32", shape=(2, 3), offsets=(0, 24)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


NAN = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0], "<f4").tobytes()
HOSTILE = {
    "header length past the end": (raw_file({"a": entry()}, length=10_000), "past the end"),
    "header length of 2**63": (raw_file({"a": entry()}, length=2**63), "header length"),
    "shorter than 8 bytes": (b"\x05\x00\x00", "less than its 8-byte"),
    "overlapping offsets": (raw_file({"a": entry(shape=(3,), offsets=(0, 12)),
                                      "b": entry(shape=(4,), offsets=(8, 24))}), "overlaps"),
    "a gap between tensors": (raw_file({"a": entry(shape=(2,), offsets=(0, 8)),
                                        "b": entry(shape=(3,), offsets=(12, 24))}), "gap"),
    "data left over": (raw_file({"a": entry(shape=(5,), offsets=(0, 20))}), "cover 20 bytes"),
    "offsets past the data": (raw_file({"a": entry(shape=(8,), offsets=(0, 32))}),
                              "outside the 24 bytes"),
    "shape and offsets disagree": (raw_file({"a": entry(shape=(2, 2))}), "needs 16 bytes"),
    "a huge shape": (raw_file({"a": entry(shape=(2**40, 2**40))}), "needs"),
    "a negative dimension": (raw_file({"a": entry(shape=(-2, -3))}), "invalid shape"),
    "non-finite weights": (raw_file({"a": entry()}, NAN), "1 non-finite values"),
    "bad JSON": (raw_file(b'{"a": {"dtype": "F32",'), "not valid JSON"),
    "bad UTF-8": (raw_file(b'{"\xff": 1}'), "not valid JSON"),
    "NaN in JSON": (raw_file(b'{"a": NaN}'), "not valid JSON"),
    "a JSON list": (raw_file(b"[1, 2]"), "must be a JSON object"),
    "unknown dtype": (raw_file({"a": entry(dtype="F31")}), "unknown dtype"),
    "bfloat16": (raw_file({"a": entry(dtype="BF16", shape=(12,))}), "BF16"),
    "duplicate keys": (raw_file(b'{"a": ' + json.dumps(entry()).encode() + b', "a": '
                                + json.dumps(entry()).encode() + b"}"), "duplicate JSON key"),
    "an extra field": (raw_file({"a": entry() | {"x": 1}}), "exactly dtype, shape"),
    "metadata that is not strings": (raw_file({"__metadata__": {"k": 1}, "a": entry()}),
                                     "strings to strings"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_file_is_one_clean_checkpoint_error(tmp_path, capfd, case):
    content, fragment = HOSTILE[case]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment):
        safetensors.read(path)
    code, _, err = run(capfd, "import", path, "--out", tmp_path / "b.npz")
    assert_one_line_error(err, code, 4, str(path), fragment)
    assert not (tmp_path / "b.npz").exists()


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "m.st"
    path.write_bytes(raw_file({"a": entry()}))
    with pytest.raises(CheckpointError, match="over the 64 bytes limit"):
        safetensors.read(path, max_bytes=64)


@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c["model"].update(hidden=9), "rnn.weight_ih_l0 is <f4 (24, 38), the config "
                                            "needs <f4 (27, 38) for a 2x9 GRU"),
    (lambda c: c["model"].update(cell="ngram"), "n-gram"),
    (lambda c: c.update(kind="other"), "not a charlm config"),
    (lambda c: c["model"].update(layers=3), "missing tensors: rnn.bias_hh_l2"),
])
def test_a_config_that_does_not_fit_the_tensors_is_refused(tmp_path, capfd, edit, fragment):
    source = weights_file(tmp_path / "best.npz", **KINDS["gru"])
    loaded = checkpoint.load(source)
    config = json.loads(json.dumps(loaded.config))
    edit(config)
    params = {k[7:]: v for k, v in loaded.arrays.items() if k.startswith("params/")}
    safetensors.write(tmp_path / "m.st", params,
                      {"charlm.config": json.dumps(config), "charlm.vocab": CHARS})
    code, _, err = run(capfd, "import", tmp_path / "m.st", "--out", tmp_path / "b.npz")
    assert_one_line_error(err, code, 4, fragment)
    assert not (tmp_path / "b.npz").exists()


def test_a_vocabulary_with_a_repeated_character_is_refused(tmp_path, capfd):
    source = weights_file(tmp_path / "best.npz", **KINDS["gru"])
    run_export(source, tmp_path / "m.st")
    st_ = safetensors.read(tmp_path / "m.st")
    meta = st_.metadata | {"charlm.vocab": "a" + CHARS[1:]}    # "a" twice, no newline
    safetensors.write(tmp_path / "m.st", st_.tensors, meta)
    code, _, err = run(capfd, "import", tmp_path / "m.st", "--out", tmp_path / "b.npz")
    assert_one_line_error(err, code, 4, "invalid vocabulary", "twice")


_VALID: list[bytes] = []


def valid_safetensors_bytes() -> bytes:
    """An exported two-layer GRU, the seed of the mutation tests."""
    if not _VALID:
        import tempfile
        with tempfile.TemporaryDirectory() as work:
            source = weights_file(Path(work) / "best.npz", **KINDS["gru"])
            run_export(source, Path(work) / "m.st")
            _VALID.append((Path(work) / "m.st").read_bytes())
    return _VALID[0]


def safetensors_outcome(path: Path) -> str:
    """'loaded' or 'refused' (a one-line CheckpointError naming the file); anything else
    propagates: the bug the fuzz looks for."""
    try:
        st_ = safetensors.read(path)
    except CheckpointError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
        return "refused"
    for arr in st_.tensors.values():
        assert arr.dtype.kind != "f" or np.isfinite(arr).all()
    return "loaded"


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_file_loads_or_raises_checkpoint_error(tmp_path, data):
    mutated = mutate(valid_safetensors_bytes(), lambda lo, hi: data.draw(st.integers(lo, hi)))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(mutated)
    assert safetensors_outcome(path) in ("loaded", "refused")
