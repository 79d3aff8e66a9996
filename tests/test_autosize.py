"""The auto-sizing rule picks bigger models for bigger budgets and respects the corpus size."""

import numpy as np

from charlm.train import autosize


def fake_timer(per_mac=2e-9, overhead=0.005):
    """Seconds per step of a machine whose cost is linear in the model's work."""
    def time_step(layers, hidden):
        return overhead + per_mac * 2048 * autosize.macs_per_char("lstm", 65, layers, hidden)
    return time_step


def test_larger_budgets_get_larger_models():
    sizes = [autosize.choose("lstm", 65, 1_000_000, budget, 32, 64, fake_timer())[:2]
             for budget in (30, 120, 600, 3600)]
    params = [autosize.parameter_count("lstm", 65, *s) for s in sizes]
    assert params == sorted(params) and params[0] < params[-1]


def test_a_small_corpus_caps_the_model():
    big_corpus = autosize.choose("lstm", 65, 10_000_000, 3600, 32, 64, fake_timer())
    small_corpus = autosize.choose("lstm", 65, 100_000, 3600, 32, 64, fake_timer())
    assert (autosize.parameter_count("lstm", 65, *small_corpus[:2])
            <= 2 * 100_000 < autosize.parameter_count("lstm", 65, *big_corpus[:2]))


def test_many_passes_over_the_corpus_bring_dropout():
    layers, hidden, dropout, reason, *_ = autosize.choose("lstm", 65, 100_000, 600, 32, 64,
                                                         fake_timer())
    assert dropout > 0 and "passes" in reason
    assert autosize.dropout_for(0.5) == 0.0


def test_a_big_model_for_its_text_gets_more_dropout_only_when_it_makes_many_passes():
    assert autosize.dropout_for(8, params_per_char=0.66) == 0.1
    assert autosize.dropout_for(8, params_per_char=1.4) == 0.2
    assert autosize.dropout_for(20, params_per_char=1.4) == 0.3
    assert autosize.dropout_for(2, params_per_char=1.9) == 0.0       # one pass cannot overfit
    assert autosize.dropout_for(30) == 0.3 and autosize.dropout_for(70, params_per_char=16) == 0.5


def test_parameter_count_matches_the_model():
    from charlm.nn import model
    cfg = model.ModelConfig(cell="gru", vocab_size=65, hidden=32, layers=3)
    flat, _ = model.init_params(cfg, np.random.default_rng(0))
    assert autosize.parameter_count("gru", 65, 3, 32) == flat.size


def test_parameter_count_matches_the_model_with_an_embedding():
    from charlm.nn import model
    for cell in ("rnn", "lstm", "gru"):
        cfg = model.ModelConfig(cell=cell, vocab_size=3000, hidden=16, layers=2, embed=8)
        flat, _ = model.init_params(cfg, np.random.default_rng(0))
        assert autosize.parameter_count(cell, 3000, 2, 16, embed=8) == flat.size


def test_parameter_count_matches_the_model_with_an_adaptive_softmax():
    from charlm.nn import model
    adaptive = autosize.Adaptive((100, 1000), 4.0, (0.1, 0.02))
    for embed in (0, 8):
        cfg = model.ModelConfig(cell="lstm", vocab_size=3000, hidden=16, layers=2, embed=embed,
                                softmax="adaptive", cutoffs=(100, 1000))
        flat, _ = model.init_params(cfg, np.random.default_rng(0))
        assert autosize.parameter_count("lstm", 3000, 2, 16, embed, adaptive) == flat.size


def test_an_adaptive_softmax_costs_its_head_and_each_cluster_by_its_share():
    rare = autosize.Adaptive((100, 1000), 4.0, (0.1, 0.0))
    often = autosize.Adaptive((100, 1000), 4.0, (0.1, 0.5))
    full = autosize.macs_per_char("gru", 3000, 2, 128, 64)
    cheap, dearer = (autosize.macs_per_char("gru", 3000, 2, 128, 64, a) for a in (rare, often))
    recurrent = full - 3000 * 128
    assert cheap == recurrent + 102 * 128 + 0.1 * (32 * 128 + 900 * 32)
    assert cheap < dearer < full


def test_when_no_size_fits_the_line_says_so_and_what_would_help():
    """A 6,000-character vocabulary and a 36k-character corpus: even the smallest candidate
    breaks both rules, and the message must not claim otherwise."""
    layers, hidden, _, reason, *_ = autosize.choose("gru", 6000, 36_000, 30, 32, 64,
                                                   fake_timer())
    assert (layers, hidden) == autosize.MEMORISING      # two layers: dropout between them
    assert reason.startswith("no size fits") and "at least 4 per parameter" not in reason
    assert "parameters per training character" in reason and "--embed" in reason
    fits = autosize.choose("lstm", 65, 10_000_000, 600, 32, 64, fake_timer())[3]
    assert "at least 4 per parameter" in fits and "no size fits" not in fits


def test_a_text_passed_over_more_than_enough_times_stops_after_enough_passes():
    many = autosize.choose("lstm", 65, 36_000, 600, 32, 64, fake_timer())
    assert many.passes == autosize.ENOUGH_PASSES
    assert "stops after them" in many.reason
    assert many.predicted_chars == autosize.ENOUGH_PASSES * 36_000
    assert many.budget_passes > autosize.ENOUGH_PASSES         # what the budget would allow
    few = autosize.choose("lstm", 65, 10_000_000, 600, 32, 64, fake_timer())
    assert few.passes == 0 and "stops after" not in few.reason


def test_the_run_takes_the_passes_auto_size_chose(tmp_path, monkeypatch):
    from charlm.data import text
    from charlm.train import session
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the cat sat on the mat. " * 400, encoding="utf-8")
    corpus = text.read_corpus([corpus_file])
    monkeypatch.setattr(session.autosize, "ENOUGH_PASSES", 3)
    plan = session.plan(corpus, [corpus_file], {}, {"time_budget": 600.0}, out=tmp_path / "r")
    assert plan.auto_size
    tcfg, choice = session._auto_size(plan)
    assert choice.passes == 3 and tcfg.epochs == 3


def test_auto_size_plans_with_the_budget_the_run_has_not_spent(tmp_path, monkeypatch):
    """The run's n-gram is fitted before auto-size (charlm.cli.train); its seconds are not
    the model's to train in."""
    from charlm.data import text
    from charlm.train import session
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the cat sat on the mat. " * 400, encoding="utf-8")
    corpus = text.read_corpus([corpus_file])
    budgets = []

    def choose(cell, vocab_size, train_chars, budget, *args, **kwargs):
        budgets.append(budget)
        return autosize.Choice(1, 16, 0.0, "chosen", 1000)
    monkeypatch.setattr(session.autosize, "choose", choose)
    plan = session.plan(corpus, [corpus_file], {}, {"time_budget": 60.0}, out=tmp_path / "r")
    session._auto_size(plan, spent=7.5)
    session._auto_size(plan)
    assert budgets == [52.5, 60.0]
