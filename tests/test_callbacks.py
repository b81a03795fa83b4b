"""Parity tests: `autoenc.callbacks` against the real Keras 3 EarlyStopping and ModelCheckpoint.

Each case feeds one sequence of logged values to the Keras callbacks, attached to a one-weight
model whose weight is set to the epoch number before every epoch, and to our classes. The weight
left after `on_train_end` says which epoch Keras restored, and the files ModelCheckpoint wrote
say which epochs it saved; both must match what our classes decide.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from autoenc.callbacks import BestCheckpoint, EarlyStopping
from autoenc.errors import UserError

NAN = float("nan")
INF = float("inf")
# What the fixture model's compiled metrics tell Keras in mode='auto'; ours needs it spelled out.
DIRECTIONS = {"accuracy": "up"}
N_RANDOM = 200


@pytest.fixture(scope="module")
def models():
    """One-weight Keras models: a plain one, and one compiled with an 'accuracy' metric.

    Keras resolves mode='auto' for a monitor other than loss from the model's compiled metrics,
    so those runs need the compiled model; the rest use the plain one, whose checkpoints carry
    no optimizer state and save about three times faster.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    def one_weight():
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])

    compiled = one_weight()
    compiled.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    # Compiled metrics only exist once built, so run one silent step.
    compiled.fit(np.zeros((2, 1)), np.zeros((2, 1)), epochs=1, verbose=0)
    return {"plain": one_weight(), "compiled": compiled}


@dataclass
class Outcome:
    """Everything observable about one run, comparable between Keras and ours."""

    epochs_run: int
    stopped_epoch: int
    wait: int
    best: Any
    best_epoch: int
    holds_weights: bool
    final_weights_epoch: int
    saved: list[int]
    checkpoint_best: Any
    monitor_warnings: int


def _key(value: Any) -> Any:
    """Make a monitored value comparable: NaN equals NaN, and the type must match too."""
    if value is None:
        return None
    as_float = float(value)
    return (type(value).__name__, "nan" if math.isnan(as_float) else as_float)


def _logs(monitor: str, value: Any) -> dict[str, Any]:
    """Logs for one epoch; a None value means the monitor is missing from them."""
    logs: dict[str, Any] = {"loss": 0.25}
    if value is not None:
        logs[monitor] = value
    return logs


def _count_monitor_warnings(caught: list[warnings.WarningMessage], monitor: str) -> int:
    return sum(monitor in str(w.message) for w in caught)


def run_keras(models, tmp_path, values, monitor, es_kwargs, ckpt_kwargs) -> Outcome:
    """Drive the real Keras callbacks the way `model.fit` does."""
    import keras

    modes = {es_kwargs.get("mode", "auto"), ckpt_kwargs.get("mode", "auto")}
    needs_metrics = bool(modes - {"min", "max"}) and monitor.removeprefix("val_") != "loss"
    model = models["compiled" if needs_metrics else "plain"]

    tmp_path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = keras.callbacks.EarlyStopping(monitor=monitor, **es_kwargs)
        checkpoint = keras.callbacks.ModelCheckpoint(
            filepath=str(tmp_path / "e{epoch}.weights.h5"),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
            **ckpt_kwargs,
        )
        callbacks = [early, checkpoint]
        model.stop_training = False
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        epochs_run = 0
        for epoch, value in enumerate(values):
            model.set_weights([np.full((1, 1), epoch, dtype="float32")])
            logs = _logs(monitor, value)
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            epochs_run += 1
            if model.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
    # Files are named after the 1-based epoch.
    saved = sorted(
        int(match.group(1)) - 1
        for path in tmp_path.iterdir()
        if (match := re.fullmatch(r"e(\d+)\.weights\.h5", path.name))
    )
    return Outcome(
        epochs_run=epochs_run,
        stopped_epoch=early.stopped_epoch,
        wait=early.wait,
        best=_key(early.best),
        best_epoch=early.best_epoch,
        holds_weights=early.best_weights is not None,
        final_weights_epoch=int(model.get_weights()[0][0, 0]),
        saved=saved,
        checkpoint_best=_key(checkpoint.best),
        monitor_warnings=_count_monitor_warnings(caught, monitor),
    )


def run_ours(values, monitor, es_kwargs, ckpt_kwargs) -> Outcome:
    """Drive our classes the way the training loop does: test, save, commit."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = EarlyStopping(monitor=monitor, metric_directions=DIRECTIONS, **es_kwargs)
        checkpoint = BestCheckpoint(monitor=monitor, metric_directions=DIRECTIONS, **ckpt_kwargs)
        saved = []
        epochs_run = 0
        for epoch, value in enumerate(values):
            logs = _logs(monitor, value)
            stop = early.update(epoch, logs)
            if checkpoint.is_improvement(logs):
                saved.append(epoch)
                checkpoint.commit(epoch, logs)
            epochs_run += 1
            if stop:
                break
    restored = early.restored_epoch()
    return Outcome(
        epochs_run=epochs_run,
        stopped_epoch=early.stopped_epoch,
        wait=early.wait,
        best=_key(early.best),
        best_epoch=early.best_epoch,
        holds_weights=early.best_weights_epoch is not None,
        final_weights_epoch=epochs_run - 1 if restored is None else restored,
        saved=saved,
        checkpoint_best=_key(checkpoint.best),
        monitor_warnings=_count_monitor_warnings(caught, monitor),
    )


def random_case(seed: int) -> tuple[list[Any], str, dict[str, Any], dict[str, Any]]:
    """A random walk of logged values plus a random configuration of both callbacks."""
    rng = np.random.default_rng(seed)
    mode = str(rng.choice(["min", "max", "auto"]))
    if mode == "auto":
        monitor = str(rng.choice(["val_loss", "val_accuracy"]))
    else:
        monitor = "val_loss" if mode == "min" else "val_accuracy"
    better = -1 if monitor == "val_loss" and mode != "max" else 1
    # Steps equal to each min_delta (and zero, for exact ties), biased towards improving so
    # that runs are not all over within a few epochs.
    steps = better * np.array([0.01, 0.005, 0.0005, 0.0, -0.0005, -0.005, -0.01])
    chosen = rng.choice(
        steps, size=int(rng.integers(3, 16)), p=[0.2, 0.15, 0.15, 0.2, 0.1, 0.1, 0.1]
    )
    start = 0.5
    values: list[Any] = []
    value = start
    for step in chosen:
        value = round(value + float(step), 4)
        values.append(value)
    if rng.random() < 0.15:
        values[int(rng.integers(len(values)))] = NAN
    if rng.random() < 0.15:
        values[int(rng.integers(len(values)))] = None
    kind = rng.random()
    if kind < 0.1:
        values = [None if v is None else np.float32(v) for v in values]
    elif kind < 0.2:
        values = [None if v is None else np.float64(v) for v in values]
    baseline = None if rng.random() < 0.5 else round(start + float(rng.choice([-0.02, 0, 0.02])), 4)
    threshold = (
        None if rng.random() < 0.6 else round(start + float(rng.choice([-0.01, 0, 0.01])), 4)
    )
    es_kwargs = {
        "min_delta": float(rng.choice([0.0, 0.0005, 0.01])),
        "patience": int(rng.integers(0, 4)),
        "mode": mode,
        "baseline": baseline,
        "restore_best_weights": bool(rng.integers(0, 2)),
        "start_from_epoch": int(rng.integers(0, 4)),
    }
    return values, monitor, es_kwargs, {"mode": mode, "initial_value_threshold": threshold}


@pytest.mark.parametrize("seed", range(N_RANDOM), ids=lambda s: f"seed{s}")
def test_random_sequences_match_keras(models, tmp_path, seed):
    values, monitor, es_kwargs, ckpt_kwargs = random_case(seed)
    expected = run_keras(models, tmp_path, values, monitor, es_kwargs, ckpt_kwargs)
    assert run_ours(values, monitor, es_kwargs, ckpt_kwargs) == expected


def test_random_sequences_exercise_every_path():
    """Guard against random cases that never reach the interesting branches."""
    outcomes = [run_ours(*random_case(seed)) for seed in range(N_RANDOM)]
    lengths = [len(random_case(seed)[0]) for seed in range(N_RANDOM)]
    assert sum(o.stopped_epoch > 0 for o in outcomes) > 50
    assert sum(o.epochs_run == n for o, n in zip(outcomes, lengths, strict=True)) > 20
    assert sum(o.final_weights_epoch != o.epochs_run - 1 for o in outcomes) > 20
    assert sum(len(o.saved) > 1 for o in outcomes) > 50
    assert sum(o.best is not None and o.best[1] == "nan" for o in outcomes) > 0
    assert sum(o.monitor_warnings > 0 for o in outcomes) > 0


# name: (values, monitor, EarlyStopping kwargs, ModelCheckpoint kwargs)
NAMED_CASES = {
    "tie_min": ([1.0, 1.0, 1.0, 1.0], "val_loss", {"patience": 1}, {}),
    "tie_max": ([0.5, 0.5, 0.5], "val_accuracy", {"mode": "max", "patience": 1}, {"mode": "max"}),
    "delta_exactly_min_delta_min": (
        [1.0, 0.5, 0.5, 0.0],
        "val_loss",
        {"min_delta": 0.5, "patience": 1, "restore_best_weights": True},
        {},
    ),
    "delta_exactly_min_delta_max": (
        [0.0, 0.5, 1.0, 1.5],
        "val_accuracy",
        {"mode": "max", "min_delta": 0.5, "patience": 2, "restore_best_weights": True},
        {"mode": "max"},
    ),
    "delta_beyond_min_delta": ([1.0, 0.25, 0.0, -0.5], "val_loss", {"min_delta": 0.5}, {}),
    "negative_min_delta": ([1.0, 0.5, 0.25, 0.0], "val_loss", {"min_delta": -0.5}, {}),
    "patience_0": ([1.0, 0.9, 0.95, 0.8], "val_loss", {"restore_best_weights": True}, {}),
    "patience_0_worse_at_once": ([1.0, 2.0, 0.5], "val_loss", {}, {}),
    "baseline_never_beaten": (
        [1.0, 0.9, 0.8, 0.85, 0.7],
        "val_loss",
        {"baseline": 0.5, "patience": 2, "restore_best_weights": True},
        {"initial_value_threshold": 0.5},
    ),
    "baseline_beaten_late": (
        [1.0, 0.9, 0.4, 0.45, 0.5, 0.6],
        "val_loss",
        {"baseline": 0.5, "patience": 2, "restore_best_weights": True},
        {"initial_value_threshold": 0.5},
    ),
    "baseline_equalled": ([0.5, 0.5, 0.5], "val_loss", {"baseline": 0.5, "patience": 1}, {}),
    "start_from_epoch": (
        [0.1, 5.0, 4.0, 3.0, 3.5, 3.2, 3.1],
        "val_loss",
        {"start_from_epoch": 2, "patience": 1, "restore_best_weights": True},
        {},
    ),
    "start_from_epoch_never_reached": (
        [3.0, 2.0, 1.0],
        "val_loss",
        {"start_from_epoch": 5, "restore_best_weights": True},
        {},
    ),
    "nan_first": (
        [NAN, 1.0, 0.5, 0.2, 0.1],
        "val_loss",
        {"patience": 2, "restore_best_weights": True},
        {},
    ),
    "nan_middle": (
        [1.0, NAN, 0.9, NAN, NAN, NAN],
        "val_loss",
        {"patience": 2, "restore_best_weights": True},
        {},
    ),
    "nan_with_baseline": ([NAN, 0.1, 0.05], "val_loss", {"baseline": 0.5, "patience": 1}, {}),
    "infinities": ([INF, 1.0, -INF, 0.0], "val_loss", {"patience": 1}, {}),
    "missing_some": (
        [1.0, None, 0.9, None, None, 0.95, 0.97],
        "val_loss",
        {"patience": 1, "restore_best_weights": True},
        {},
    ),
    "missing_all": ([None, None, None], "val_loss", {"restore_best_weights": True}, {}),
    "missing_first": ([None, 1.0, 2.0, 3.0], "val_loss", {"restore_best_weights": True}, {}),
    "max_accuracy": (
        [0.5, 0.6, 0.6, 0.55, 0.7, 0.65, 0.64],
        "val_accuracy",
        {"mode": "max", "patience": 2, "restore_best_weights": True},
        {"mode": "max"},
    ),
    "auto_accuracy_from_compiled_metric": (
        [0.5, 0.6, 0.6, 0.55, 0.7, 0.65, 0.64],
        "val_accuracy",
        {"patience": 2, "restore_best_weights": True},
        {},
    ),
    "auto_loss": ([0.5, 0.6, 0.4, 0.45, 0.46], "loss", {"patience": 1}, {}),
    "unknown_mode_falls_back_to_auto": (
        [1.0, 0.9, 0.95],
        "val_loss",
        {"mode": "bogus"},
        {"mode": "bogus"},
    ),
    "runs_to_end_still_restores": (
        [1.0, 0.5, 0.7, 0.6],
        "val_loss",
        {"patience": 5, "restore_best_weights": True},
        {},
    ),
    "threshold_beaten": (
        [1.0, 0.9, 0.7, 0.75, 0.6],
        "val_loss",
        {"patience": 9},
        {"initial_value_threshold": 0.8},
    ),
    # 1.0 - 1e-9 differs from 1.0 as a float64 but not as a float32: Keras sees a tie.
    "python_floats_compare_as_float32": (
        [1.0, 1.0 - 1e-9, 1.0 - 2e-9],
        "val_loss",
        {"patience": 1},
        {},
    ),
    "numpy_float64_compares_as_float64": (
        [np.float64(1.0), np.float64(1.0 - 1e-9), np.float64(1.0 - 2e-9), np.float64(1.0)],
        "val_loss",
        {"patience": 1},
        {},
    ),
    "numpy_float32_with_min_delta": (
        [np.float32(0.7), np.float32(0.6995), np.float32(0.699), np.float32(0.69)],
        "val_loss",
        {"patience": 1, "min_delta": 0.0005},
        {},
    ),
    "python_ints": ([3, 2, 2, 1, 1], "val_loss", {"patience": 1}, {}),
    # Keras compares an int32 with a float32 in float32 (numpy would use float64): a tie.
    "python_int_then_float": ([16777217, 16777216.5], "val_loss", {}, {}),
}

# Hand-checked results for the cases that pin down surprising Keras behaviour:
# (epochs run, stopped_epoch, epoch whose weights the model ends with, saved epochs).
EXPECTED = {
    "tie_min": (2, 1, 1, [0]),
    "delta_exactly_min_delta_min": (2, 1, 0, [0, 1]),
    "delta_exactly_min_delta_max": (4, 0, 2, [0, 1, 2, 3]),
    "baseline_never_beaten": (4, 3, 2, []),
    "start_from_epoch": (5, 4, 3, [0]),
    "start_from_epoch_never_reached": (3, 0, 2, [0, 1, 2]),
    "nan_first": (3, 2, 0, [0]),
    "missing_all": (3, 0, 2, [0, 1, 2]),
    "runs_to_end_still_restores": (4, 0, 1, [0, 1]),
    "python_floats_compare_as_float32": (2, 1, 1, [0]),
    "numpy_float64_compares_as_float64": (4, 3, 3, [0, 1, 2]),
    "python_int_then_float": (2, 1, 1, [0]),
}


@pytest.mark.parametrize("name", NAMED_CASES)
def test_named_case_matches_keras(models, tmp_path, name):
    values, monitor, es_kwargs, ckpt_kwargs = NAMED_CASES[name]
    expected = run_keras(models, tmp_path, values, monitor, es_kwargs, ckpt_kwargs)
    ours = run_ours(values, monitor, es_kwargs, ckpt_kwargs)
    assert ours == expected
    if name in EXPECTED:
        summary = (ours.epochs_run, ours.stopped_epoch, ours.final_weights_epoch, ours.saved)
        assert summary == EXPECTED[name]


def test_missing_monitor_warns_once_per_callback_and_epoch(models, tmp_path):
    values = [1.0, None, 0.9, None]
    expected = run_keras(models, tmp_path, values, "val_loss", {"patience": 3}, {})
    ours = run_ours(values, "val_loss", {"patience": 3}, {})
    assert ours == expected
    assert ours.monitor_warnings == 4


def test_unknown_mode_warns_like_keras():
    with pytest.warns(UserWarning, match="mode 'bogus' is unknown, fallback to auto"):
        early = EarlyStopping(mode="bogus")
    with pytest.warns(UserWarning, match="mode 'bogus' is unknown, fallback to auto"):
        checkpoint = BestCheckpoint(mode="bogus")
    assert early.mode == checkpoint.mode == "auto"
    assert early.direction == checkpoint.direction == "min"


@pytest.mark.parametrize(
    ("which", "monitor"),
    [("compiled", "val_mystery"), ("plain", "val_accuracy"), ("plain", "val_acc")],
)
def test_auto_mode_with_unknown_direction_raises_like_keras(models, tmp_path, which, monitor):
    """Keras 3 has no 'acc' substring rule: without a compiled metric, auto mode fails."""
    import keras

    for callback in (
        keras.callbacks.EarlyStopping(monitor=monitor),
        keras.callbacks.ModelCheckpoint(
            str(tmp_path / "x.weights.h5"), monitor=monitor, save_weights_only=True
        ),
    ):
        callback.set_model(models[which])
        with pytest.raises(ValueError, match="maximized or minimized"):
            callback.on_epoch_end(0, {monitor: 1.0})
    # Keras only fails at the first epoch end; ours knows at construction.
    directions = DIRECTIONS if which == "compiled" else None
    with pytest.raises(ValueError, match="maximized or minimized"):
        EarlyStopping(monitor=monitor, metric_directions=directions)
    with pytest.raises(ValueError, match="maximized or minimized"):
        BestCheckpoint(monitor=monitor, metric_directions=directions)


def test_float32_overflow_raises_like_keras(models, tmp_path):
    values = [1.0, 3.5e38]
    with pytest.raises(ValueError):
        run_keras(models, tmp_path, values, "val_accuracy", {"mode": "max"}, {"mode": "max"})
    with pytest.raises(ValueError):
        run_ours(values, "val_accuracy", {"mode": "max"}, {})
    # Values that round to the largest float32 are still fine.
    assert run_ours([1.0, 3.40282356e38], "val_accuracy", {"mode": "max"}, {}).stopped_epoch == 0


def test_failed_save_records_no_best():
    checkpoint = BestCheckpoint()
    assert checkpoint.is_improvement({"val_loss": 1.0})
    checkpoint.commit(0, {"val_loss": 1.0})
    assert checkpoint.is_improvement({"val_loss": 0.5})
    # The save failed, so no commit: the next epoch is still measured against 1.0.
    assert (checkpoint.best, checkpoint.best_epoch) == (1.0, 0)
    assert checkpoint.is_improvement({"val_loss": 0.75})
    checkpoint.commit(2, {"val_loss": 0.75})
    assert (checkpoint.best, checkpoint.best_epoch) == (0.75, 2)


def test_commit_rejects_a_value_that_is_no_improvement():
    checkpoint = BestCheckpoint(initial_value_threshold=0.5)
    with pytest.raises(ValueError, match="not an improvement"):
        checkpoint.commit(0, {"val_loss": 0.5})
    assert checkpoint.best_epoch is None


def test_missing_monitor_saves_without_recording_a_best():
    checkpoint = BestCheckpoint(initial_value_threshold=0.5)
    with pytest.warns(UserWarning, match="only with val_loss available"):
        assert checkpoint.is_improvement({"loss": 0.1})
    checkpoint.commit(0, {"loss": 0.1})
    assert (checkpoint.best, checkpoint.best_epoch) == (0.5, None)


def _decisions(early, checkpoint, values, monitor, start):
    """Per-epoch (stop, save) decisions for `values`, which begin at epoch `start`."""
    decisions = []
    for epoch, value in enumerate(values, start):
        logs = _logs(monitor, value)
        stop = early.update(epoch, logs)
        save = checkpoint.is_improvement(logs)
        if save:
            checkpoint.commit(epoch, logs)
        decisions.append((stop, save))
    return decisions


def _check_resume_matches(values, monitor, es_kwargs, ckpt_kwargs):
    """Interrupting after every epoch and resuming from JSON changes no decision."""

    def fresh():
        return (
            EarlyStopping(monitor=monitor, metric_directions=DIRECTIONS, **es_kwargs),
            BestCheckpoint(monitor=monitor, metric_directions=DIRECTIONS, **ckpt_kwargs),
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        early, checkpoint = fresh()
        straight = _decisions(early, checkpoint, values, monitor, 0)
        final = (early.state_dict(), checkpoint.state_dict(), early.restored_epoch())
        for split in range(1, len(values)):
            first_early, first_checkpoint = fresh()
            head = _decisions(first_early, first_checkpoint, values[:split], monitor, 0)
            saved = json.dumps(
                {"early": first_early.state_dict(), "checkpoint": first_checkpoint.state_dict()},
                allow_nan=False,
            )
            early, checkpoint = fresh()
            early.load_state_dict(json.loads(saved)["early"])
            checkpoint.load_state_dict(json.loads(saved)["checkpoint"])
            tail = _decisions(early, checkpoint, values[split:], monitor, split)
            assert head + tail == straight, f"split at {split}"
            assert (early.state_dict(), checkpoint.state_dict(), early.restored_epoch()) == final


@pytest.mark.parametrize("seed", range(0, N_RANDOM, 4), ids=lambda s: f"seed{s}")
def test_resume_from_json_matches_uninterrupted_random(seed):
    _check_resume_matches(*random_case(seed))


@pytest.mark.parametrize(
    "name",
    [
        "nan_first",
        "infinities",
        "missing_some",
        "baseline_never_beaten",
        "python_floats_compare_as_float32",
        "numpy_float64_compares_as_float64",
        "numpy_float32_with_min_delta",
        "python_ints",
    ],
)
def test_resume_from_json_matches_uninterrupted_named(name):
    values, monitor, es_kwargs, ckpt_kwargs = NAMED_CASES[name]
    _check_resume_matches(values, monitor, es_kwargs, ckpt_kwargs)


def test_state_dict_keeps_the_type_that_decides_comparisons():
    """A float64 best must not come back as a Python float, which compares as float32."""
    early = EarlyStopping(patience=5)
    early.update(0, {"val_loss": 1.0 + 1e-9})
    state = json.loads(json.dumps(early.state_dict(), allow_nan=False))
    assert state["best"] == {"type": "float", "value": 1.0 + 1e-9}
    early = EarlyStopping(patience=5)
    early.update(0, {"val_loss": np.float64(1.0 + 1e-9)})
    state = json.loads(json.dumps(early.state_dict(), allow_nan=False))
    resumed = EarlyStopping(patience=5)
    resumed.load_state_dict(state)
    assert type(resumed.best) is np.float64 and resumed.best == np.float64(1.0 + 1e-9)
    resumed.update(1, {"val_loss": np.float64(1.0)})
    assert (resumed.best_epoch, resumed.wait) == (1, 0)


def test_state_dict_encodes_non_finite_values_as_strings():
    early = EarlyStopping()
    early.update(0, {"val_loss": NAN})
    assert early.state_dict()["best"] == {"type": "float", "value": "nan"}
    checkpoint = BestCheckpoint(initial_value_threshold=np.float32(-INF))
    assert checkpoint.state_dict() == {
        "best": {"type": "numpy.float32", "value": "-inf"},
        "best_epoch": None,
    }
    resumed = BestCheckpoint()
    resumed.load_state_dict(json.loads(json.dumps(checkpoint.state_dict(), allow_nan=False)))
    assert type(resumed.best) is np.float32 and resumed.best == -INF


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"wait": 0, "best_epoch": 0, "stopped_epoch": 0, "best_weights_epoch": None},
        {"wait": "0", "best": None, "best_epoch": 0, "stopped_epoch": 0, "best_weights_epoch": 0},
        {
            "wait": 0,
            "best": {"type": "complex", "value": 1},
            "best_epoch": 0,
            "stopped_epoch": 0,
            "best_weights_epoch": None,
        },
        {
            "wait": 0,
            "best": {"type": "float", "value": "huge"},
            "best_epoch": 0,
            "stopped_epoch": 0,
            "best_weights_epoch": None,
        },
    ],
)
def test_corrupt_state_is_a_user_error(state):
    early = EarlyStopping()
    with pytest.raises(UserError, match="Corrupt callback state"):
        early.load_state_dict(state)
    assert early.state_dict()["wait"] == 0


def test_metric_directions_are_validated():
    with pytest.raises(ValueError, match="'up' or 'down'"):
        EarlyStopping(monitor="val_accuracy", metric_directions={"accuracy": "max"})
