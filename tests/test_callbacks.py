"""`autoenc.callbacks` against the real Keras EarlyStopping and ModelCheckpoint(save_best_only).

Each case feeds one sequence of logged values to the Keras callbacks, attached to a one-weight model
whose weight is set to the epoch index before each epoch, and to ours. Per epoch, stop and save
must agree; at the end, the counters and the epoch whose weights the model is left with. Values
lie on a grid of eighths, where Keras' float32 comparisons and our float64 ones agree exactly.
"""

import json
import math
import warnings

import numpy as np
import pytest

from autoenc.callbacks import BestCheckpoint, EarlyStopping
from autoenc.errors import UserError

NAN, INF = math.nan, math.inf
N_RANDOM = 150


@pytest.fixture(scope="module")
def models():
    import keras

    def one_weight():
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])

    compiled = one_weight()
    compiled.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    # Compiled metrics only exist once the model has trained a step.
    compiled.fit(np.zeros((2, 1)), np.zeros((2, 1)), epochs=1, verbose=0)
    return {"plain": one_weight(), "compiled": compiled}


def _key(value):
    """A value comparable across runs: NaN equals NaN."""
    return None if value is None else ("nan" if math.isnan(value) else float(value))


def _logs(monitor, value):
    return {"loss": 0.25} if value is None else {"loss": 0.25, monitor: value}


def _summary(early, checkpoint, final_epoch, caught, monitor):
    warned = sum(monitor in str(w.message) for w in caught)
    es = (early.stopped_epoch, early.wait, _key(early.best), early.best_epoch)
    return (*es, final_epoch, _key(checkpoint.best), warned)


def run_keras(models, tmp_path, case):
    """Per-epoch (stop, save) and the final summary, from the Keras callbacks driven as `fit`
    drives them (its `CallbackList` hands them each log as `float(value)`)."""
    import keras

    values, monitor, es_kwargs, ckpt_kwargs = case
    modes = {es_kwargs.get("mode", "auto"), ckpt_kwargs.get("mode", "auto")}
    model = models["plain" if modes <= {"min", "max"} or monitor == "val_loss" else "compiled"]
    model.stop_training = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = keras.callbacks.EarlyStopping(monitor=monitor, **es_kwargs)
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(tmp_path / "{epoch}.weights.h5"),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
            **ckpt_kwargs,
        )
        callbacks = keras.callbacks.CallbackList([early, checkpoint], model=model)
        callbacks.on_train_begin()
        decisions = []
        for epoch, value in enumerate(values):
            model.set_weights([np.full((1, 1), epoch, dtype="float32")])
            callbacks.on_epoch_end(epoch, _logs(monitor, value))
            saved = (tmp_path / f"{epoch + 1}.weights.h5").exists()
            decisions.append((model.stop_training, saved))
            if model.stop_training:
                break
        callbacks.on_train_end()
    final_epoch = int(model.get_weights()[0][0, 0])
    return decisions, _summary(early, checkpoint, final_epoch, caught, monitor)


def _ours(kwargs, monitor):
    """Keras reads val_accuracy's direction in 'auto' (or unknown) mode from the compiled
    model; ours has none and is told, as the loop tells it (run_state.make_early_stopping)."""
    if monitor == "val_accuracy" and kwargs.get("mode", "auto") not in ("min", "max"):
        return dict(kwargs, mode="max")
    return kwargs


def _fresh(case):
    _, monitor, es_kwargs, ckpt_kwargs = case
    return (
        EarlyStopping(monitor=monitor, **_ours(es_kwargs, monitor)),
        BestCheckpoint(monitor=monitor, **_ours(ckpt_kwargs, monitor)),
    )


def _decide(early, checkpoint, values, monitor, start=0):
    """Per-epoch (stop, save) as the training loop asks: test, save, commit, then early stopping."""
    decisions = []
    for epoch, value in enumerate(values, start):
        logs = _logs(monitor, value)
        save = checkpoint.is_improvement(logs)
        if save:
            checkpoint.commit(epoch, logs)
        decisions.append((early.update(epoch, logs), save))
        if decisions[-1][0]:
            break
    return decisions


def run_ours(case):
    values, monitor = case[:2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early, checkpoint = _fresh(case)
        decisions = _decide(early, checkpoint, values, monitor)
    restored = early.restored_epoch()
    final_epoch = len(decisions) - 1 if restored is None else restored
    return decisions, _summary(early, checkpoint, final_epoch, caught, monitor)


def random_case(seed):
    """A random walk in eighths, with NaN, infinities and missing values, and random settings."""
    rng = np.random.default_rng(seed)
    monitor = str(rng.choice(["val_loss", "val_accuracy"]))
    mode = str(rng.choice(["min", "max", "auto"]))
    better = -1 if mode == "min" or (mode == "auto" and monitor == "val_loss") else 1
    steps = better * rng.choice([2, 1, 1, 0, 0, -1, -2], size=int(rng.integers(2, 15))) / 8
    values = [float(v) for v in 4.0 + np.cumsum(steps)]
    for odd in (NAN, INF, -INF, None):
        if rng.random() < 0.15:
            values[int(rng.integers(len(values)))] = odd
    es_kwargs = dict(
        min_delta=float(rng.choice([0.0, 0.0, 0.125, -0.125, 0.25])),
        patience=int(rng.integers(0, 4)),
        mode=mode,
        baseline=None if rng.random() < 0.6 else 4.0 + float(rng.choice([-0.25, 0.0, 0.25])),
        restore_best_weights=bool(rng.integers(0, 2)),
        start_from_epoch=int(rng.choice([0, 0, 0, 1, 3])),
    )
    threshold = None if rng.random() < 0.6 else 4.0 + float(rng.choice([-0.125, 0.0, 0.125]))
    return values, monitor, es_kwargs, dict(mode=mode, initial_value_threshold=threshold)


def test_random_sequences_decide_as_keras(models, tmp_path):
    runs = []
    for seed in range(N_RANDOM):
        case = random_case(seed)
        expected = run_keras(models, tmp_path / str(seed), case)
        assert run_ours(case) == expected, f"seed {seed}: {case}"
        runs.append((expected, len(case[0])))
    # The cases stop early, run to the end, restore, save often, keep a NaN best and warn.
    assert sum(s[0] > 0 for (_, s), _ in runs) > 60
    assert sum(len(decisions) == n for (decisions, _), n in runs) > 20
    assert sum(s[4] != len(d) - 1 for (d, s), _ in runs) > 30
    assert sum(sum(save for _, save in decisions) > 2 for (decisions, _), _ in runs) > 15
    assert sum(s[2] == "nan" for (_, s), _ in runs) > 1
    assert sum(s[6] > 0 for (_, s), _ in runs) > 4


def _named(values, es_kwargs, expected, ckpt_kwargs=None, monitor="val_loss"):
    return (values, monitor, es_kwargs, ckpt_kwargs or {}), expected


RESTORE = dict(restore_best_weights=True)
# Hand-checked: (epochs run, stopped_epoch, epoch whose weights the run ends with, epochs saved).
NAMED = {
    "a tie is no improvement": _named([1.0, 1.0, 1.0, 1.0], dict(patience=1), (2, 1, 1, [0])),
    "the sign of min_delta is ignored": _named(
        [1.0, 0.5, 0.5, 0.0], dict(min_delta=-0.5, patience=1, **RESTORE), (2, 1, 0, [0, 1])
    ),
    "improving short of the baseline uses patience": _named(
        [1.0, 0.875, 0.75, 0.8125, 0.625],
        dict(baseline=0.5, patience=2, **RESTORE),
        (4, 3, 2, []),
        dict(initial_value_threshold=0.5),
    ),
    "an improving epoch never stops": _named(
        [1.0, 0.875, 0.75, 0.625], dict(baseline=0.5, patience=1), (4, 0, 3, [0, 1, 2, 3])
    ),
    "a first NaN stays the best": _named(
        [NAN, 1.0, 0.5, 0.25], dict(patience=2, **RESTORE), (3, 2, 0, [0])
    ),
    "infinities compare": _named([INF, 1.0, -INF, 0.0], dict(patience=1), (4, 3, 3, [0, 1, 2])),
    "unmonitored epochs restore nothing": _named(
        [3.0, 2.0, 1.0], dict(start_from_epoch=5, **RESTORE), (3, 0, 2, [0, 1, 2])
    ),
    "a missing monitor saves every epoch": _named([None] * 3, RESTORE, (3, 0, 2, [0, 1, 2])),
    "running to the end still restores": _named(
        [1.0, 0.5, 0.75, 0.625], dict(patience=5, **RESTORE), (4, 0, 1, [0, 1])
    ),
    "auto takes the compiled metric's direction": _named(
        [0.5, 0.625, 0.625, 0.5], dict(patience=1), (3, 2, 2, [0, 1]), monitor="val_accuracy"
    ),
    "an unknown mode falls back to auto": _named(
        [1.0, 0.875, 0.9375], dict(mode="bogus"), (3, 2, 2, [0, 1]), dict(mode="bogus")
    ),
}


@pytest.mark.parametrize("name", NAMED)
def test_named_case_decides_as_keras(models, tmp_path, name):
    case, expected = NAMED[name]
    ours = run_ours(case)
    assert ours == run_keras(models, tmp_path, case)
    decisions, summary = ours
    saved = [epoch for epoch, (_, save) in enumerate(decisions) if save]
    assert (len(decisions), summary[0], summary[4], saved) == expected


def test_auto_mode_without_a_direction_raises_like_keras(models, tmp_path):
    """Keras 3 has no 'acc' substring rule: without a compiled metric, 'auto' cannot decide."""
    import keras

    keras_early = keras.callbacks.EarlyStopping(monitor="val_acc")
    keras_early.set_model(models["plain"])
    with pytest.raises(ValueError, match="maximized or minimized"):
        keras_early.on_epoch_end(0, {"val_acc": 1.0})
    for rule in (EarlyStopping, BestCheckpoint):
        with pytest.raises(ValueError, match="maximized or minimized"):
            rule(monitor="val_acc")


def test_resume_from_json_decides_as_uninterrupted():
    """Saving the state after any epoch and loading it into fresh rules changes no decision."""
    for seed in range(0, N_RANDOM, 3):
        case = random_case(seed)
        values, monitor = case[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            early, checkpoint = _fresh(case)
            straight = _decide(early, checkpoint, values, monitor)
            final = (early.state_dict(), checkpoint.state_dict(), early.restored_epoch())
            for split in range(1, len(straight)):
                early, checkpoint = _fresh(case)
                head = _decide(early, checkpoint, values[:split], monitor)
                saved = json.dumps([early.state_dict(), checkpoint.state_dict()], allow_nan=False)
                early, checkpoint = _fresh(case)
                early.load_state_dict(json.loads(saved)[0])
                checkpoint.load_state_dict(json.loads(saved)[1])
                tail = _decide(early, checkpoint, values[split:], monitor, split)
                assert head + tail == straight, f"seed {seed}, split {split}"
                state = (early.state_dict(), checkpoint.state_dict(), early.restored_epoch())
                assert json.dumps(state) == json.dumps(final), f"seed {seed}, split {split}"


def test_a_failed_save_records_no_best():
    checkpoint = BestCheckpoint()
    assert checkpoint.is_improvement({"val_loss": 1.0})
    checkpoint.commit(0, {"val_loss": 1.0})
    assert checkpoint.is_improvement({"val_loss": 0.5})  # the save fails: no commit
    assert (checkpoint.best, checkpoint.best_epoch) == (1.0, 0)
    assert checkpoint.is_improvement({"val_loss": 0.75})
    with pytest.raises(ValueError, match="does not beat"):
        checkpoint.commit(2, {"val_loss": 1.0})
    checkpoint.commit(2, {"val_loss": 0.75})
    assert (checkpoint.best, checkpoint.best_epoch) == (0.75, 2)


def test_state_reads_the_typed_form_and_rejects_a_corrupt_one():
    early = EarlyStopping(patience=3)
    typed = {"type": "float", "value": "nan"}
    early.load_state_dict(dict(wait=1, best=typed, best_epoch=2, stopped_epoch=0))
    assert math.isnan(early.best) and early.state_dict()["best"] == "nan"
    for corrupt in (dict(wait=1, best="huge", best_epoch=2, stopped_epoch=0), dict(wait=1)):
        with pytest.raises(UserError, match="corrupt stopping-rule state"):
            early.load_state_dict(corrupt)
    assert (early.wait, early.best_epoch) == (1, 2)
