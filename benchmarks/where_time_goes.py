"""Where a training step's time goes on this machine: the figures behind README's "Why the rest
is out of reach here".

Command (from the repository root; about 1 minute on 2 cores):

    python benchmarks/where_time_goes.py [--rounds=N]

Four probes; the first three with their arms interleaved round by round (A B C, then C B A,
...), medians:

  layers    each layer of the conv denoiser alone at batch 128, forward and forward+backward
            (gradients for its weights and, except the first layer, its input), with the
            layer's share of the model's multiply-adds.
  dense     the dense model's default train steps (XLA: all the steps of a call as one
            program, on one block of the call's batches) fed by the real pipeline, against the
            same steps as one XLA program per step launched from TensorFlow's loop on batch
            after batch (how the library ran them before), and against the default steps fed
            one block over and over (no batch building competing for the cores).
  tf.data   the cost per dataset element of a bare `from_tensor_slices` of a (steps, 256) index
            matrix, drained in a traced loop as the train loop drains batches, against the
            dense pipeline's real batches (a gather of 256 uint8 images) and its blocks of 20
            batches (one gather of 5,120 images), per element and per batch.
  primitives
            one conv training step (the library's steps, batch 128) in a child process with
            ONEDNN_VERBOSE=1: oneDNN's own time for each convolution primitive (forward,
            backward-data, backward-weights) and its GFLOP/s against a 2048x2048 float32 matmul
            timed in this process by the throughput benchmark's own matmul arm (best of 3).

It runs with launch.py's process settings (oneDNN on, one malloc arena), as the other benchmarks.
"""

import argparse
import collections
import itertools
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from autoenc.command_line import configure_process  # noqa: E402

configure_process()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import throughput  # noqa: E402  (benchmarks/, the script's own directory)

from autoenc import config as config_lib  # noqa: E402
from autoenc import data as data_lib  # noqa: E402
from autoenc import distribute, models, pipeline, steps, train  # noqa: E402


def interleaved(arms: dict, rounds: int) -> dict[str, float]:
    """Median of the seconds each arm's `run()` returns (its timed part), arms alternating order
    every round, after one warm-up call each."""
    for run in arms.values():
        run()
    seconds = {name: [] for name in arms}
    names = list(arms)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            seconds[name].append(arms[name]())
    return {name: statistics.median(values) for name, values in seconds.items()}


def conv_layers(rounds: int, batch: int = 128, repeats: int = 10) -> None:
    """Forward and forward+backward time of each conv-denoiser layer alone."""
    model = models.conv_denoiser().autoencoder
    arms, macs = {}, {}
    x = tf.random.stateless_uniform([batch, *models.IMAGE_SHAPE], seed=[0, 0])
    for index, layer in enumerate(model.layers[1:]):
        layer_input = tf.random.stateless_uniform([batch, *x.shape[1:]], seed=[0, index + 1])
        first = index == 0

        def forward(inputs, layer=layer):
            return tf.reduce_sum(layer(inputs))

        def forward_backward(inputs, layer=layer, first=first):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                total = tf.reduce_sum(layer(inputs))
            sources = list(layer.trainable_variables) + ([] if first else [inputs])
            return tape.gradient(total, sources) if sources else total

        for kind, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
            traced = tf.function(fn)

            def run(traced=traced, layer_input=layer_input):
                started = time.perf_counter()
                for _ in range(repeats):
                    out = traced(layer_input)
                tf.nest.map_structure(lambda t: t.numpy(), out)
                return time.perf_counter() - started

            arms[(layer.name, kind)] = run
        x = layer(x)
        if isinstance(layer, keras.layers.Conv2D):
            rows, cols, channels_in, channels_out = layer.kernel.shape
            height, width = x.shape[1:3]
            macs[layer.name] = height * width * rows * cols * channels_in * channels_out
    medians = interleaved(arms, rounds)
    total_macs = sum(macs.values())
    step = sum(s for (_, kind), s in medians.items() if kind == "fwd+bwd") / repeats
    print(f"conv denoiser layer by layer, batch {batch} (ms per call; share of the sum)")
    print(f"  {'layer':<12}{'fwd':>8}{'fwd+bwd':>10}{'time':>8}{'MACs':>8}")
    for layer in model.layers[1:]:
        forward = medians[(layer.name, "fwd")] / repeats
        both = medians[(layer.name, "fwd+bwd")] / repeats
        share = macs.get(layer.name, 0) / total_macs
        times = f"{forward * 1e3:8.2f}{both * 1e3:10.2f}"
        print(f"  {layer.name:<12}{times}{both / step:8.1%}{share:8.1%}")
    print(f"  sum of fwd+bwd {step * 1e3:.1f} ms = {batch / step:,.0f} images/s")


def dense_steps(rounds: int, images: tf.Tensor, calls: int = 10) -> None:
    """The dense model's default train steps fed by the pipeline (XLA: one program per call, on
    one block of the call's batches), the same steps as one program per step launched from
    TensorFlow's loop on batch after batch (the library before session 4), and the default
    steps fed one block over and over."""
    config = config_lib.load_config("dense_compress")
    train.set_op_determinism(config.deterministic)
    strategy = distribute.make_strategy()
    keras.utils.set_random_seed(config.seed)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    model, batch_size = nets.autoencoder, config.batch_size
    train_steps = steps.make_train_steps(
        strategy, model, optimizer, batch_size, jit_compile=config.xla
    )
    replica_step = tf.function(
        steps.make_replica_step(model, optimizer, batch_size), jit_compile=config.xla
    )
    program_per_step = steps.make_step_loop(strategy, replica_step)
    per_call = config.steps_per_loop
    takes_blocks = steps.trains_on_blocks(strategy, model, jit_compile=config.xla)

    def batches(epoch, blocks=takes_blocks):  # one epoch: a call to fill the buffer, `calls`
        return pipeline.train_dataset(
            images,
            batch_size=batch_size,
            epoch=epoch,
            seed=config.seed,
            noise_factor=0.0,
            input_shape=models.input_shape(config),
            block_sizes=[per_call] * (1 + calls) if blocks else None,
        )

    one_element = next(iter(batches(0)))
    epochs = itertools.count()

    def arm(make_dataset, step_calls=train_steps):
        def run():  # the clock starts after a first call has filled the prefetch buffer
            iterator = iter(make_dataset())
            step_calls(iterator, tf.constant(per_call)).numpy()
            started = time.perf_counter()
            for _ in range(calls):
                step_calls(iterator, tf.constant(per_call)).numpy()
            return time.perf_counter() - started

        return run

    medians = interleaved(
        {
            "pipeline": arm(lambda: batches(next(epochs))),
            "program per step": arm(lambda: batches(next(epochs), blocks=False), program_per_step),
            "one element repeated": arm(lambda: tf.data.Dataset.from_tensors(one_element).repeat()),
        },
        rounds,
    )
    images_per_run = calls * per_call * batch_size
    print(f"dense train steps (xla={config.xla}), {calls * per_call} steps per measurement")
    for name, seconds in medians.items():
        print(
            f"  {name:<20}{images_per_run / seconds:10,.0f} images/s"
            f"  {seconds / (calls * per_call) * 1e3:5.2f} ms/step"
        )
    ratio = medians["program per step"] / medians["pipeline"]
    print(
        f"  default (one XLA program and one block per call) / one program per step: {ratio:.2f}x"
    )
    ratio = medians["pipeline"] / medians["one element repeated"]
    print(f"  one element repeated / pipeline: {ratio:.2f}x")


def tf_data_floor(rounds: int, images: tf.Tensor, batch: int = 256, block: int = 20) -> None:
    """Cost per dataset element of a bare dataset, the dense pipeline's batches and its blocks
    of `block` batches (what the dense XLA steps take per call)."""
    count = images.shape[0] // batch
    blocks = count // block
    indices = tf.reshape(tf.range(count * batch), [count, batch])

    @tf.function
    def drain(iterator, num_elements):
        total = tf.constant(0.0)
        for _ in tf.range(num_elements):
            first = tf.nest.flatten(next(iterator))[0]
            total += tf.cast(tf.reshape(first, [-1])[0], tf.float32)
        return total

    def arm(make_dataset, warm, timed):
        def run():  # the clock starts after the first `warm` elements (iterator start-up)
            iterator = iter(make_dataset())
            drain(iterator, tf.constant(warm)).numpy()
            started = time.perf_counter()
            drain(iterator, tf.constant(timed)).numpy()
            return time.perf_counter() - started

        return run

    def dense(block_sizes=None):
        return pipeline.train_dataset(
            images, batch_size=batch, epoch=0, seed=0, noise_factor=0.0, input_shape=(784,),
            block_sizes=block_sizes,
        )  # fmt: skip

    # name: (dataset, warm-up elements, timed elements, batches per element)
    setups = {
        "bare elements": (lambda: tf.data.Dataset.from_tensor_slices(indices), 10, count - 10, 1),
        "dense batches": (dense, 10, count - 10, 1),
        f"dense blocks of {block}": (lambda: dense([block] * blocks), 1, blocks - 1, block),
    }
    medians = interleaved(
        {name: arm(make, warm, timed) for name, (make, warm, timed, _) in setups.items()}, rounds
    )
    print("tf.data, an epoch's elements drained in a traced loop (us per element, per batch)")
    for name, seconds in medians.items():
        _, _, timed, per_element = setups[name]
        microseconds = seconds / timed * 1e6
        print(f"  {name:<20}{microseconds:8.0f}{microseconds / per_element:8.0f}")


CHILD_FLAG = "--primitives-child"
CONV_SHAPE = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+)\D.*_iw\d+ow(\d+)kw(\d+)")
PRIMITIVES_START = "timed steps start"


def primitives_child(steps_timed: int = 3) -> None:
    """Runs conv train steps; oneDNN prints each primitive's time (ONEDNN_VERBOSE=1)."""
    config = config_lib.load_config("conv_denoise")
    train.set_op_determinism(config.deterministic)
    strategy = distribute.make_strategy()
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    train_steps = steps.make_train_steps(strategy, nets.autoencoder, optimizer, config.batch_size)
    noisy = tf.random.stateless_uniform([config.batch_size, *models.IMAGE_SHAPE], seed=[0, 1])
    clean = tf.cast(noisy * 255, tf.uint8)
    iterator = iter(tf.data.Dataset.from_tensors((noisy, clean)).repeat())
    train_steps(iterator, tf.constant(2)).numpy()  # primitives are created in the first calls
    print(PRIMITIVES_START, flush=True)
    train_steps(iterator, tf.constant(steps_timed)).numpy()
    sys.stdout.flush()


def conv_primitives(steps_timed: int = 3) -> None:
    """oneDNN's time for each convolution primitive of a conv step, and its GFLOP/s."""
    child = subprocess.run(
        [sys.executable, __file__, CHILD_FLAG],
        env={**os.environ, "ONEDNN_VERBOSE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = child.stdout.split(PRIMITIVES_START, 1)[1].splitlines()
    measure_matmul = throughput.matmul_arm()  # the throughput benchmark's yardstick
    measure_matmul(0)  # tracing
    matmul_gflops = measure_matmul(0).rate / 1e9
    totals, flops = collections.defaultdict(float), collections.defaultdict(float)
    other_ms = 0.0
    for line in lines:
        fields = line.split(",")
        if fields[:4] != ["onednn_verbose", "v1", "primitive", "exec"]:
            continue
        kind, direction, shape, ms = fields[5], fields[7], fields[-2], float(fields[-1])
        match = CONV_SHAPE.match(shape)
        if kind != "convolution" or not match:
            other_ms += ms / steps_timed
            continue
        batch, c_in, c_out, out_h, k_h, out_w, k_w = map(int, match.groups())
        key = (f"{c_in}->{c_out} at {out_h}x{out_w}", direction)  # two layers share one
        totals[key] += ms / steps_timed
        flops[key] += 2 * batch * c_in * c_out * out_h * out_w * k_h * k_w / steps_timed
    if not totals:  # e.g. TF_ENABLE_ONEDNN_OPTS=0 exported: Eigen's kernels, no oneDNN log
        print("oneDNN primitives: none logged (are oneDNN's kernels off?)")
        return
    step_ms = sum(totals.values()) + other_ms
    print(f"oneDNN primitives of one conv train step, batch 128 (ms, mean of {steps_timed} steps;")
    print(f"  GFLOP/s and its share of a {matmul_gflops:.0f} GFLOP/s float32 matmul)")
    print(f"  {'convolution':<18}{'pass':<20}{'ms':>7}{'GFLOP/s':>9}{'of matmul':>11}")
    for (layer, direction), ms in totals.items():
        gflops = flops[(layer, direction)] / ms / 1e6
        share = gflops / matmul_gflops
        print(f"  {layer:<18}{direction:<20}{ms:7.2f}{gflops:9.1f}{share:11.0%}")
    print(f"  pooling, reorders, other oneDNN primitives: {other_ms:.2f} ms")
    all_flops = sum(flops.values())
    rate = all_flops / step_ms / 1e6
    print(
        f"  sum {step_ms:.1f} ms for {all_flops / 1e9:.2f} GFLOP: {rate:.1f} GFLOP/s,"
        f" {rate / matmul_gflops:.0%} of the matmul (oneDNN's time only)"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.primitives_child:
        primitives_child()
        return
    tf.random.set_seed(0)  # op determinism wants a seed for the random inputs
    images = tf.constant(data_lib.load_fashion_mnist(None).x_train)
    conv_layers(args.rounds)
    print()
    dense_steps(args.rounds, images)
    print()
    tf_data_floor(args.rounds, images)
    print()
    conv_primitives()


if __name__ == "__main__":
    main()
