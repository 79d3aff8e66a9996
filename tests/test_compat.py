"""Checkpoints written by an earlier charlm still load, score, sample and resume the same.

tests/data/format1/*.npz were written by charlm 0.1.0 as released before the package was
reorganised (format version 1), trained on conftest.SMALL_TEXT with
    charlm train small.txt --cell CELL --layers 2 --hidden 12 --batch-size 4 --seq-len 16
        --steps 12 --eval-every 6 --optimizer adamw      (rnn: --activation relu)
    charlm train small.txt --cell ngram --order 4
The figures below are what that charlm printed for them (`eval perplexity --json`, `sample
--prime "The " --length 40 --seed 3`, and the score after `train --resume ... --steps 18`).
The scores match to float64 rounding on the CPU that wrote them; another CPU's BLAS kernels
(AVX2 or AVX-512, a different order of the float32 sums) move them in the ninth digit, so
they are compared to 1e-7 of their size: a changed equation or a misread array moves them by
far more.
"""

import json
from pathlib import Path

import pytest
from conftest import run

FIXTURES = Path(__file__).parent / "data" / "format1"
NATS = {"gru": 3.433416319685504, "lstm": 3.468193011385425, "rnn": 3.509804261392197,
        "ngram": 0.1375037402887854}
SAMPLES = {"gru": "The ,ask,ghAq.fjglqybnob\nzbcvlhr pe,nxTmbqpT",
           "lstm": "The ,Ttl,giAq.fjgmrybopb\nzccwlhs",
           "rnn": "The ,atl.giAr.fjglrybopc\nyccwmis",
           "ngram": "The lazy dog.\nA stone ga x fshes ning, and e"}
LSTM_RESUMED_TO_18 = 3.451519622139074


@pytest.mark.parametrize("kind", sorted(NATS))
def test_an_earlier_checkpoint_scores_and_samples_the_same(kind, small_corpus, capfd):
    path = FIXTURES / f"{kind}.npz"
    code, out, err = run(capfd, "eval", "perplexity", path, small_corpus, "--json")
    assert code == 0, err
    assert json.loads(out)["nats_per_char"] == pytest.approx(NATS[kind], rel=1e-7, abs=0)
    code, out, err = run(capfd, "sample", path, "--prime", "The ", "--length", 40, "--seed", 3)
    assert code == 0, err
    assert out.startswith(SAMPLES[kind])
    code, out, err = run(capfd, "info", path, "--json")
    assert code == 0 and json.loads(out)["format_version"] == 1, err


def test_an_earlier_checkpoint_resumes_exactly(small_corpus, tmp_path, capfd):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.npz").write_bytes((FIXTURES / "lstm.npz").read_bytes())
    code, _, err = run(capfd, "train", small_corpus, "--resume", run_dir / "last.npz",
                       "--steps", 18, "--quiet")
    assert code == 0, err
    code, out, err = run(capfd, "eval", "perplexity", run_dir / "last.npz", small_corpus,
                         "--json")
    assert json.loads(out)["nats_per_char"] == pytest.approx(LSTM_RESUMED_TO_18, rel=1e-7, abs=0)


def test_an_embedding_needs_format_2(tmp_path, capfd):
    """A model with an embedding is written as format 2 (a charlm that reads only format 1
    refuses it by its version); a format-1 file that claims one is refused as corrupt."""
    from charlm.io import checkpoint, npz
    loaded = checkpoint.load(FIXTURES / "gru.npz")
    config = json.loads(json.dumps(loaded.config))
    config["model"]["embed"] = 4
    bad = tmp_path / "bad.npz"
    npz.save_checkpoint(bad, dict(loaded.arrays), config, 1)
    code, _, err = run(capfd, "info", bad)
    assert code == 4 and "'embed' needs format 2" in err, err
