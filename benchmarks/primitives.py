"""oneDNN's own account of a conv train step: `python -m benchmarks.primitives PRECISION`, run
with ONEDNN_VERBOSE=1 by `benchmarks.where_time_goes`, trains a few conv steps and oneDNN logs
every primitive it executes; `parse_verbose` turns that log into which kernel ran each
convolution pass, its time and its FLOP.
"""

import collections
import dataclasses
import os
import re
import sys

PRIMITIVES_START = "timed steps start"
STEPS_TIMED = 3
CONV_SHAPE = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+)\D.*_iw\d+ow(\d+)kw(\d+)")
DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


@dataclasses.dataclass
class Convolution:
    """One convolution pass of a step: its layer shape, pass, oneDNN kernel and cost."""

    layer: str  # e.g. "32->32 at 14x14"
    direction: str  # forward_training, backward_data, backward_weights
    kernel: str  # oneDNN's implementation, e.g. "brg_conv_fwd:avx512_core_bf16"
    dtype: str  # of its source tensor: float32 or bfloat16
    ms: float = 0.0  # per step
    flop: float = 0.0  # per step


def parse_verbose(log: str, steps: int = STEPS_TIMED) -> tuple[list[Convolution], dict]:
    """oneDNN's exec lines of `steps` steps: the convolutions (per step), and the ms per step
    of every other primitive kind (reorder, pooling, ...)."""
    rows, other = {}, collections.defaultdict(float)
    for line in log.splitlines():
        fields = line.split(",")
        if fields[:4] != ["onednn_verbose", "v1", "primitive", "exec"] or len(fields) < 12:
            continue
        kind, kernel, direction, descriptor = fields[5], fields[6], fields[7], fields[8]
        shape, ms = fields[-2], float(fields[-1]) / steps
        match = CONV_SHAPE.match(shape)
        if kind != "convolution" or not match:
            other[kind] += ms
            continue
        batch, c_in, c_out, out_h, k_h, out_w, k_w = map(int, match.groups())
        source = re.search(r"src:(\w+):", descriptor)
        dtype = DTYPES.get(source.group(1), source.group(1)) if source else "float32"
        layer = f"{c_in}->{c_out} at {out_h}x{out_w}"  # two layers may share one
        key = (layer, direction, kernel)
        row = rows.setdefault(key, Convolution(layer, direction, kernel, dtype))
        row.ms += ms
        row.flop += 2 * batch * c_in * c_out * out_h * out_w * k_h * k_w / steps
    return list(rows.values()), dict(other)


def conv_train_steps(precision: str):
    """The conv model's traced train steps in `precision` and an iterator of one random batch
    repeated, with launch.py's process settings; the first calls already made."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoenc.command_line import configure_process

    configure_process()
    import tensorflow as tf

    from autoenc import config as config_lib
    from autoenc import distribute, models, steps, train

    config = config_lib.load_config("conv_denoise")
    config.precision = precision
    train.set_op_determinism(config.deterministic)
    strategy = distribute.make_strategy()
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    train_steps = steps.TrainSteps(strategy, nets.autoencoder, optimizer, config.batch_size)
    noisy = tf.random.stateless_uniform([config.batch_size, *models.IMAGE_SHAPE], seed=[0, 1])
    clean = tf.cast(noisy * 255, tf.uint8)
    iterator = iter(tf.data.Dataset.from_tensors((noisy, clean)).repeat())
    train_steps(iterator, 2).numpy()  # tracing; oneDNN creates its primitives here
    return train_steps, iterator


def main(precision: str) -> None:
    """Trains conv steps in `precision` on random data and marks where the timed steps start."""
    train_steps, iterator = conv_train_steps(precision)
    print(PRIMITIVES_START, flush=True)
    train_steps(iterator, STEPS_TIMED).numpy()
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
