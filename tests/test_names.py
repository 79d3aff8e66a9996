"""One list of each kind of name, and one set of defaults: the registries and the CLI follow
charlm.names and charlm.train.config, so a name or a default added in one place shows up
everywhere (or a test here fails)."""

import dataclasses

import typer.main

from charlm import names
from charlm.cli import app
from charlm.cli import options as o
from charlm.nn import optim
from charlm.nn.cells import CELLS
from charlm.train.config import DEFAULTS, LIMITS, RESUMED, TrainConfig


def _train_command():
    group = typer.main.get_command(app)
    return group.commands["train"]


def test_registries_follow_the_names():
    assert tuple(CELLS) == names.CELLS
    assert tuple(optim.OPTIMIZERS) == names.OPTIMIZERS
    for kind in names.SCHEDULES:
        optim.schedule_factor(kind, 0.5, 0.1)            # every schedule name is implemented
    assert [c.value for c in o.Cell] == list(names.MODEL_KINDS)
    assert [c.value for c in o.OptimizerName] == list(names.OPTIMIZERS)
    assert [c.value for c in o.Schedule] == list(names.SCHEDULES)
    assert [c.value for c in o.Activation] == list(names.ACTIVATIONS)


def test_train_help_shows_the_train_config_defaults():
    """Every train option named like a TrainConfig field shows that field's default (unless it
    describes a rule instead, such as "10 times per run" for a 0)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    shown = {p.name: p.show_default for p in _train_command().params if p.name in fields}
    assert set(RESUMED) | set(LIMITS) <= set(shown)
    checked = 0
    for name, text in shown.items():
        default = getattr(DEFAULTS, name)
        if not isinstance(text, str) or " " in text:
            continue                          # no default shown, or a rule in words
        if isinstance(default, str):
            assert text == default, (name, text, default)
        else:
            assert float(text) == float(default), (name, text, default)
        checked += 1
    assert checked >= 15                      # the size, rate, clipping and split settings


def test_every_setting_a_resume_keeps_or_changes_is_a_train_config_field():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUMED) <= fields and set(LIMITS) <= fields
    assert not set(RESUMED) & set(LIMITS)
