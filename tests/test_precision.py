"""Speed switches must not change what the model learns: XLA and mixed precision vs float32.

A short run (2 epochs of Adam on the tiny synthetic set) with each switch reaches the val_loss
of the float32 run within a stated tolerance:
- XLA (`--config.xla=true`) fuses the same float32 arithmetic in another order: float noise,
  1e-4 relative.
- bfloat16 (`mixed_bfloat16`) keeps 8 bits of mantissa in activations and gradients, and
- float16 (`mixed_float16`, with dynamic loss scaling) 11 bits: 2% relative, far below the
  gap between epochs (the test also checks that gap, so the tolerance means something).
"""

import numpy as np
import pytest
from conftest import mirrored

from autoenc import train
from configs import conv_denoise, dense_compress

TOLERANCES = {"xla": 1e-4, "mixed_bfloat16": 0.02, "mixed_float16": 0.02}
BASES = {"dense": dense_compress, "conv": conv_denoise}


def short_run(tmp_path, tiny_data, model, **overrides):
    config = BASES[model].get_config()
    config.update(dict(batch_size=64, epochs=2, steps_per_loop=4, optimizer="adam"))
    config.learning_rate = 0.003
    config.early_stopping.enabled = False
    config.update(overrides)
    workdir = tmp_path / "_".join([model, *(f"{k}{v}" for k, v in overrides.items())])
    train.train_and_evaluate(config, workdir, data=tiny_data, strategy=mirrored(2))
    history = np.genfromtxt(workdir / "history.csv", delimiter=",", names=True)
    return history["val_loss"]


@pytest.mark.parametrize("model", ["dense", "conv"])
def test_xla_and_mixed_precision_reach_float32_val_loss(tmp_path, tiny_data, model):
    reference = short_run(tmp_path, tiny_data, model)
    assert reference[1] < reference[0] * (1 - 3 * TOLERANCES["mixed_bfloat16"])  # it learns
    runs = {
        "xla": dict(xla=True, deterministic=model == "dense"),  # see config.validate
        "mixed_bfloat16": dict(precision="mixed_bfloat16"),
        "mixed_float16": dict(precision="mixed_float16"),
    }
    for name, overrides in runs.items():
        val_loss = short_run(tmp_path, tiny_data, model, **overrides)
        np.testing.assert_allclose(val_loss, reference, rtol=TOLERANCES[name], err_msg=name)
