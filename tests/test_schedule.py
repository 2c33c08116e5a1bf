"""The learning-rate schedule: Keras 2.2.5's ReduceLROnPlateau on the validation loss, and its
state through a checkpoint."""
import json
import math

import pytest

from src.config import parse_config
from src.train.schedule import PlateauLR, build_schedule
from tests.conftest import TINY


def _rates(losses, **keys):
    sched = PlateauLR(1e-3, 1 / 3, 2, 1e-4, **keys)
    return [sched.update(v) for v in losses]


def test_plateau_lowers_after_patience_epochs_without_improvement_down_to_the_floor():
    lrs = _rates((1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9), min_delta=1e-4)
    assert lrs[:3] == [1e-3, 1e-3, 1e-3]
    assert lrs[3] == pytest.approx(1e-3 / 3) and lrs[5] == pytest.approx(1e-3 / 9)
    assert lrs[-1] == pytest.approx(1e-4)  # the floor


def test_an_improvement_within_min_delta_is_no_improvement():
    # 0.99995 < 1.0 but not by more than 1e-4: Keras counts it as a second epoch without improvement
    assert _rates((1.0, 0.99995, 0.99991), min_delta=1e-4)[-1] == pytest.approx(1e-3 / 3)
    assert _rates((1.0, 0.99995, 0.99991), min_delta=0.0)[-1] == 1e-3  # each a new best without it
    # the best stays 1.0, so 0.99985, more than 1e-4 below it, improves
    assert _rates((1.0, 0.99991, 0.99985), min_delta=1e-4)[-1] == 1e-3


def test_cooldown_epochs_count_no_waiting_and_are_checked_before_the_improvement():
    flat = (1.0,) + (2.0,) * 7
    assert _rates(flat, cooldown=0) == pytest.approx([1e-3, 1e-3, 1e-3 / 3, 1e-3 / 3, 1e-3 / 9, 1e-3 / 9, 1e-4,
                                                      1e-4])
    # cooldown 2: the next epoch neither waits nor reduces; the one whose check ends the cooldown
    # (Keras checks the cooldown first) already waits
    assert _rates(flat, cooldown=2) == pytest.approx([1e-3, 1e-3, 1e-3 / 3, 1e-3 / 3, 1e-3 / 3, 1e-3 / 9,
                                                      1e-3 / 9, 1e-3 / 9])


def test_the_state_goes_through_json_and_older_checkpoints_have_no_cooldown():
    sched = PlateauLR(1e-3, 1 / 3, 2, 1e-4, cooldown=3)
    for v in (1.0, 2.0, 2.0):
        sched.update(v)
    again = PlateauLR(1e-3, 1 / 3, 2, 1e-4, cooldown=3)
    again.load_state(json.loads(json.dumps(sched.state())))
    assert again.state() == sched.state() and again.update(0.5) == sched.update(0.5)
    old = PlateauLR(1e-3, 1 / 3, 2, 1e-4, cooldown=3)
    old.load_state({"lr": 1e-3, "best": math.inf, "wait": 1})  # written before the cooldown was kept
    assert old.state()["cooldown"] == 0


def test_the_config_keys_reach_the_schedule():
    sched = build_schedule(parse_config(["--config_path", TINY, "--lr_min_delta", "0.01", "--lr_cooldown", "1"]))
    assert (sched.min_delta, sched.cooldown) == (0.01, 1)
    default = build_schedule(parse_config(["--config_path", TINY]))
    assert default.min_delta == 1e-4 and default.cooldown == 0  # Keras 2.2.5's, as the original ran
