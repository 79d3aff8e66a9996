"""When a run stops and validates (charlm.train.stopping), rule by rule."""

from charlm.io.progress import Progress
from charlm.train.config import TrainConfig
from charlm.train.stopping import EvalSchedule, StoppingRule, total_steps


def test_steps_and_epochs_stop_at_the_first_reached():
    windows = 26                                      # one pass
    assert total_steps(TrainConfig(steps=100, epochs=2), windows) == 52
    assert total_steps(TrainConfig(steps=10, epochs=2), windows) == 10
    assert total_steps(TrainConfig(epochs=0.5), windows) == 13
    assert total_steps(TrainConfig(steps=7), windows) == 7
    assert total_steps(TrainConfig(time_budget=30), windows) == 0
    assert total_steps(TrainConfig(), windows) == windows


def test_a_budget_stops_a_final_validation_early_and_is_recorded_as_spent():
    rule = StoppingRule(steps=0, time_budget=100, patience=0)
    rule.validated(10.0)                              # a validation takes 10 s
    p = Progress(step=5, elapsed=85.0)
    assert not rule.after_step(p) and p.budget_spent is None
    p.elapsed = 91.0                                  # 91 + 10 > 100: the last step
    assert rule.after_step(p) and p.budget_spent == 100
    resumed = Progress(step=6, elapsed=95.0, budget_spent=100)
    assert rule.finished(resumed)                     # the same budget again: nothing to do
    assert not StoppingRule(0, 200, 0).finished(resumed)   # a larger one extends the run


def test_steps_patience_and_the_fraction_the_schedule_follows():
    rule = StoppingRule(steps=10, time_budget=0, patience=2)
    assert not rule.finished(Progress(step=9)) and rule.finished(Progress(step=10))
    assert not rule.out_of_patience(Progress(evals_since_best=1))
    assert rule.out_of_patience(Progress(evals_since_best=2))
    assert not StoppingRule(10, 0, 0).out_of_patience(Progress(evals_since_best=99))
    assert rule.fraction(Progress(step=5)) == 0.5
    both = StoppingRule(steps=10, time_budget=100, patience=0)
    assert both.fraction(Progress(step=2, elapsed=60.0)) == 0.6   # the further of the two


def test_validation_every_n_steps_or_every_s_seconds():
    by_steps = EvalSchedule(TrainConfig(steps=50), steps=50, elapsed=0.0)
    assert [s for s in range(1, 51) if by_steps.due(Progress(step=s))] == list(range(5, 51, 5))
    by_time = EvalSchedule(TrainConfig(time_budget=100), steps=0, elapsed=0.0)
    assert not by_time.due(Progress(elapsed=19.0)) and by_time.due(Progress(elapsed=20.0))
    by_time.done(Progress(elapsed=21.0))
    assert not by_time.due(Progress(elapsed=40.0)) and by_time.due(Progress(elapsed=41.0))


def test_a_cheap_validation_runs_more_often_under_a_time_budget():
    budget = TrainConfig(time_budget=120)
    assert EvalSchedule(budget, 0, 0.0, validation_seconds=1.0).seconds == 24.0   # a fifth
    assert EvalSchedule(budget, 0, 0.0, validation_seconds=0.1).seconds == 5.0    # 50 of them
    assert EvalSchedule(budget, 0, 0.0, validation_seconds=0.001).seconds == 1.2  # at most 100
    chosen = TrainConfig(time_budget=120, eval_seconds=30)
    assert EvalSchedule(chosen, 0, 0.0, validation_seconds=0.1).seconds == 30     # as asked


def test_a_due_validation_near_the_end_is_the_last_one():
    """No two validations a step apart: one that is due when another step and the final
    validation would not fit behind it ends the run."""
    rule = StoppingRule(steps=0, time_budget=100, patience=0)
    rule.validated(10.0)
    assert not rule.after_step(Progress(elapsed=75.0), due=True)     # 75 + 2 x 10 fits
    p = Progress(elapsed=85.0)
    assert rule.after_step(p, due=True) and p.budget_spent == 100    # 85 + 20 does not
    assert not rule.after_step(Progress(elapsed=85.0), due=False)    # not due: a step more


def test_the_longest_validation_is_kept_for_a_resume():
    rule, p = StoppingRule(0, 100, 0), Progress()
    rule.validated(3.0, p)
    rule.validated(2.0, p)
    assert p.validation_seconds == 3.0 and rule.reserve == 3.0
    assert Progress.from_dict(p.to_dict()).validation_seconds == 3.0


def test_a_measured_validation_replaces_the_start_up_estimate():
    """The estimate (with its 0.5 s floor) may be far off a tiny validation; once one is
    measured, the run reserves what it saw, and only that goes into the checkpoint."""
    rule, p = StoppingRule(0, 4, 0), Progress()
    rule.estimated(0.5)
    assert rule.reserve == 0.5 and p.validation_seconds == 0.0
    rule.validated(0.01, p)
    assert rule.reserve == 0.01 and p.validation_seconds == 0.01
    assert not rule.after_step(Progress(elapsed=3.9), due=True)    # 3.9 + 2 x 0.01 fits


def test_the_work_after_the_final_validation_is_kept_inside_the_budget():
    """A run that scores its mixture after training (charlm.train.mixture) stops early
    enough for that too."""
    rule = StoppingRule(steps=0, time_budget=100, patience=0)
    rule.validated(10.0)
    assert not rule.after_step(Progress(elapsed=80.0))               # 80 + 10 fits
    rule.after_run = lambda: 15.0
    p = Progress(elapsed=80.0)
    assert rule.after_step(p) and p.budget_spent == 100              # 80 + 10 + 15 does not
    assert not rule.after_step(Progress(elapsed=70.0))               # 70 + 25 fits
