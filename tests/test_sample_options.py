"""`charlm sample`'s scored, stoppable, constrained and beam samples and `charlm predict`, as a
user runs them, on every model kind: each figure checked against an independent computation."""

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

from charlm import lm
from charlm.nn import inference, kneser_ney, output
from charlm.nn.model import initial_state

NEURAL = ("--layers", "1", "--hidden", "16", "--steps", "12", "--batch-size", "4", "--seq-len",
          "16")
KINDS = {
    "gru": ("--cell", "gru", *NEURAL),
    "adaptive": ("--cell", "lstm", *NEURAL, "--embed", "8", "--softmax", "adaptive",
                 "--cutoffs", "10"),
    "ngram": ("--cell", "ngram", "--order", "3"),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny model of each kind, trained on the tests' small text: {kind: checkpoint}."""
    from conftest import SMALL_TEXT

    from charlm.cli import main
    root = tmp_path_factory.mktemp("models")
    corpus = root / "small.txt"
    corpus.write_text(SMALL_TEXT, encoding="utf-8")
    found = {}
    for kind, options in KINDS.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(corpus), *options, "--out", str(root / kind), "--quiet"])
        assert exit_info.value.code == 0
        found[kind] = root / kind / "best.npz"
    return found


def _json_lines(out):
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_a_samples_log_prob_is_minus_the_nats_eval_gives_its_text(models, kind, tmp_path,
                                                                  capfd):
    ckpt = models[kind]
    code, out, err = run(capfd, "sample", ckpt, "--prime", "T", "--length", "60", "--seed",
                         "5", "--num-samples", "2", "--json")
    assert code == 0, err
    for record in _json_lines(out):
        text = tmp_path / "sample.txt"
        text.write_text("T" + record["text"], encoding="utf-8")
        code, scored, err = run(capfd, "eval", "perplexity", ckpt, text, "--json")
        assert code == 0, err
        scored = json.loads(scored)
        assert scored["chars"] == record["chars"] == len(record["text"]) == 60
        nats = scored["nats_per_char"] * scored["chars"]
        assert record["log_prob"] == pytest.approx(-nats, rel=1e-5)
        assert record["nats_per_char"] == pytest.approx(-record["log_prob"] / 60)


def test_a_tempered_or_truncated_samples_log_prob_is_higher_than_the_models(models, tmp_path,
                                                                            capfd):
    """Under top-k and a low temperature the drawn characters were likelier than the model
    alone makes them: log_prob is of the distribution they were drawn from."""
    ckpt = models["gru"]
    code, out, _ = run(capfd, "sample", ckpt, "--prime", "T", "--length", "60", "--seed", "5",
                       "--temperature", "0.5", "--top-k", "5", "--json")
    record = _json_lines(out)[0]
    text = tmp_path / "sample.txt"
    text.write_text("T" + record["text"], encoding="utf-8")
    _, scored, _ = run(capfd, "eval", "perplexity", ckpt, text, "--json")
    assert record["log_prob"] > -json.loads(scored)["nats_per_char"] * 60 + 1


@pytest.mark.parametrize("kind", KINDS)
def test_beam_of_one_equals_greedy_with_and_without_a_template(models, kind, capfd):
    ckpt = models[kind]
    for shape in (("--length", "50"), ("--template", "The ___ ____ a___,\\n_____ ___.")):
        code, greedy, err = run(capfd, "sample", ckpt, "--prime", "The", "--temperature", "0",
                                *shape)
        assert code == 0 and err == "", err
        code, beamed, err = run(capfd, "sample", ckpt, "--prime", "The", "--beam", "1", *shape)
        assert code == 0 and beamed == greedy
        assert err.startswith("log-probability -")


@pytest.mark.parametrize("kind", KINDS)
def test_a_beams_log_prob_is_the_models_own(models, kind, tmp_path, capfd):
    ckpt = models[kind]
    for width in ("1", "4"):
        code, out, err = run(capfd, "sample", ckpt, "--prime", "T", "--length", "30", "--beam",
                             width, "--json")
        assert code == 0, err
        record = _json_lines(out)[0]
        text = tmp_path / "beam.txt"
        text.write_text("T" + record["text"], encoding="utf-8")
        _, scored, _ = run(capfd, "eval", "perplexity", ckpt, text, "--json")
        assert record["log_prob"] == pytest.approx(-json.loads(scored)["nats_per_char"] * 30,
                                                   rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_template_keeps_its_characters_and_fills_the_rest_with_allowed_ones(models, kind,
                                                                             capfd):
    form = "Th_ ___, ___ ____.\n_____"
    forced = {i: ch for i, ch in enumerate(form.replace("\\n", "\n")) if ch != "_"}
    for extra in (("--temperature", "8", "--seed", "1", "--num-samples", "10"),
                  ("--beam", "3")):
        code, out, err = run(capfd, "sample", models[kind], "--template", form.replace("\n", "\\n"),
                             *extra, "--json")
        assert code == 0, err
        for record in _json_lines(out):
            text = record["text"]
            assert len(text) == len(form)
            assert all(text[i] == ch for i, ch in forced.items()), text
            chosen = [text[i] for i in range(len(form)) if i not in forced]
            assert all(ch.isalnum() for ch in chosen), text   # the text has no other symbols
    code, out, _ = run(capfd, "sample", models[kind], "--template", "______________",
                       "--allow", "[:space:][:punct:]", "--temperature", "8", "--seed", "1",
                       "--json", "--num-samples", "5")
    assert {ch for r in _json_lines(out) for ch in r["text"]} & set(" ,.;\n")


def test_samples_end_at_their_first_stop_and_repeat_under_a_seed(models, capfd):
    args = ("sample", models["gru"], "--prime", "T", "--length", "80", "--stop", "e ",
            "--stop", "\\n", "--num-samples", "8", "--seed", "2", "--json")
    code, out, err = run(capfd, *args)
    assert code == 0, err
    records = _json_lines(out)
    assert len(records) == 8 and len({r["text"] for r in records}) > 1
    for record in records:
        text = record["text"]
        ends = [text.find(s) + len(s) for s in ("e ", "\n") if s in text]
        assert len(text) == min(ends, default=80)
    assert sum(len(r["text"]) < 80 for r in records) >= 4
    assert run(capfd, *args)[1] == out


def test_text_output_streams_each_sample_after_the_prime(models, capfd):
    code, out, _ = run(capfd, "sample", models["gru"], "--prime", "The", "--length", "20",
                       "--num-samples", "3", "--seed", "1")
    assert code == 0
    samples = out.split("\n\n")
    assert len(samples) == 3 and all(s.startswith("The") for s in samples)


def test_a_prime_file_is_read_like_a_corpus(models, tmp_path, capfd):
    ckpt = models["gru"]
    prime = tmp_path / "prime.txt"
    prime.write_text("The dog.\nA ", encoding="utf-8")
    from_file = run(capfd, "sample", ckpt, "--prime-file", prime, "--length", "30", "--seed", "4")
    from_option = run(capfd, "sample", ckpt, "--prime", "The dog.\nA ", "--length", "30",
                      "--seed", "4")
    assert from_file[0] == 0 and from_file[1] == from_option[1]
    prime.write_bytes(b"The caf\xe9")
    code, _, err = run(capfd, "sample", ckpt, "--prime-file", prime)
    assert_one_line_error(err, code, 3, "not valid UTF-8", "--encoding-errors replace")
    code, _, err = run(capfd, "sample", ckpt, "--prime-file", prime, "--encoding-errors",
                       "replace", "--unknown", "skip", "--length", "5")
    assert code == 0, err


def _independent_distribution(model, prime):
    """The next character's probabilities after prime, not through the stepper: the whole-chunk
    model (nn.inference.infer) or the n-gram's stream scorer, one candidate at a time."""
    ids = model.vocab.encode(prime)[0].astype(np.int64)
    if hasattr(model, "params"):
        state = initial_state(model.model_config, 1, np.float32)
        top, _ = inference.infer(model.params, model.model_config, ids[:, None], state)
        z = output.log_probs(model.params, model.model_config, top)[-1].astype(np.float64)
        return np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return np.array([np.exp(kneser_ney.log_prob_stream(model.model, np.append(ids, c))[-1])
                     for c in range(model.vocab.size)])


@pytest.mark.parametrize("kind", KINDS)
def test_predict_gives_the_models_next_character_probabilities(models, kind, capfd):
    model = lm.load(models[kind])
    expected = _independent_distribution(model, "The do")
    code, out, err = run(capfd, "predict", models[kind], "--prime", "The do", "--top", "5",
                         "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 5
    probs = [r["prob"] for r in rows]
    assert probs == sorted(probs, reverse=True)
    for row in rows:
        assert row["prob"] == pytest.approx(expected[model.vocab.index(row["char"])], rel=1e-5)
    assert probs[0] == pytest.approx(expected.max(), rel=1e-5)
    code, out, _ = run(capfd, "predict", models[kind], "--prime", "The do", "--top", "1000",
                       "--json")
    every = json.loads(out)
    assert len(every) == model.vocab.size
    assert sum(r["prob"] for r in every) <= 1 + 1e-9
    assert sum(r["prob"] for r in every) == pytest.approx(1.0)


def test_predict_prints_a_table(models, capfd):
    code, out, _ = run(capfd, "predict", models["gru"], "--prime", "The", "--top", "3")
    assert code == 0 and "probability" in out and "cumulative" in out
    assert len([line for line in out.splitlines() if line.startswith("│")]) == 3


@pytest.mark.parametrize("args,expected_code,fragment", [
    (("--stop", ""), 2, "--stop '' is empty"),
    (("--stop", "€"), 3, "not in the model's vocabulary"),
    (("--template", "The end."), 2, "no '_'"),
    (("--template", "€__"), 3, "'€'"),
    (("--template", "__\\q"), 2, "unknown escape"),
    (("--template", "__", "--length", "5"), 2, "drop --length"),
    (("--allow", "!"), 2, "give a --template"),
    (("--template", "__", "--allow", "[:alpha:]"), 2, "unknown class"),
    (("--beam", "0"), 2, "--beam"),
    (("--beam", "2", "--temperature", "0.5"), 2, "--temperature"),
    (("--beam", "2", "--num-samples", "3"), 2, "--num-samples"),
    (("--num-samples", "0"), 2, "--num-samples"),
    (("--prime", "The", "--prime-file", "{missing}"), 2, "not both"),
    (("--prime-file", "{missing}"), 3, "missing.txt"),
    (("--prime-file", "{empty}"), 3, "is empty"),
])
def test_bad_sample_options_get_one_line_and_an_exit_code(models, tmp_path, capfd, args,
                                                          expected_code, fragment):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    names = {"missing": tmp_path / "missing.txt", "empty": empty}
    args = [a.format(**{k: str(v) for k, v in names.items()}) for a in args]
    code, out, err = run(capfd, "sample", models["gru"], *args)
    assert_one_line_error(err, code, expected_code, fragment)
    assert out == ""


@pytest.mark.parametrize("args,expected_code,fragment", [
    (("--top", "0"), 2, "--top"),
    (("--prime", "€"), 3, "--prime"),
])
def test_bad_predict_options_get_one_line_and_an_exit_code(models, capfd, args, expected_code,
                                                           fragment):
    code, out, err = run(capfd, "predict", models["gru"], *args)
    assert_one_line_error(err, code, expected_code, fragment)
    assert out == ""
