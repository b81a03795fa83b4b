"""Where a training step's time goes on this CPU: the figures behind docs/speed.md's "why".

    python -m benchmarks.where_time_goes [--rounds=N] [--precisions=float32,mixed_bfloat16]
                                         [--only=layers,ops,dense,tf.data,primitives,upsampling,noise]

Seven probes; `layers`, `dense`, `tf.data`, `upsampling` and `noise` interleave their arms round
by round (A B C, then C B A) and give medians:

  layers      each layer of the conv denoiser alone at batch 128, forward and forward+backward
              (gradients for its weights and, except the first layer, its input), in each of
              `--precisions` (the same rounds), with the layer's share of the multiply-adds.
  ops         one conv train step per precision in a child process under TensorFlow's
              profiler: the time of each op type, grouped as oneDNN's convolutions, pooling
              and the rest (Eigen's elementwise ops, casts, the optimizer), per precision.
  dense       the dense model's default train steps fed by the real pipeline, against the same
              steps fed one element over and over (no batch building competing for the cores).
  tf.data     the cost per dataset element of a bare `from_tensor_slices`, of the dense
              pipeline's batches and of its blocks of 20 batches, drained in a traced loop.
  primitives  one conv train step per precision in a child process with ONEDNN_VERBOSE=1:
              which oneDNN kernel ran each convolution pass (e.g. `avx512_core_bf16`, or a
              reference fallback), its time and GFLOP/s against the matmul of that dtype.

  upsampling  the forward pass of a fused upsampling layer (`layers.UpsampledConv2D`) as oneDNN's
              transposed convolution and parity by parity, for 1 to 32 filters on the conv
              model's last upsampling input (batch 128, 14x14x32), in each of `--precisions`:
              up to which filter count the parity form is faster on this CPU.
  noise       the CPU time of one conv training batch's noise (128x28x28), TensorFlow's normal
              sampler (float32 runs) against `pipeline.normal_from_16_bits` (mixed precisions),
              beyond a call that only clips.

It runs with launch.py's process settings (oneDNN on, one malloc arena), as the other benchmarks.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from autoenc.command_line import configure_process  # noqa: E402

configure_process()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoenc import config as config_lib  # noqa: E402
from autoenc import data as data_lib  # noqa: E402
from autoenc import distribute, layers, models, pipeline, steps, train  # noqa: E402
from benchmarks import cpu as cpu_lib  # noqa: E402
from benchmarks.arms import conv_multiply_adds_per_pixel, matmul_arm  # noqa: E402
from benchmarks.primitives import PRIMITIVES_START, parse_verbose  # noqa: E402

PROBES = ("layers", "ops", "dense", "tf.data", "primitives", "upsampling", "noise")
UPSAMPLING_FILTERS = (1, 2, 4, 8, 16, 32)
# How `ops` groups TensorFlow's op types: oneDNN's convolutions, its pooling, and the rest
# (Eigen's elementwise ops and reductions, casts, transposes, the optimizer's updates).
OP_GROUPS = (("convolutions", "Conv2D"), ("pooling", "Pool"))


def interleaved(arms: dict, rounds: int) -> dict:
    """Median of the seconds each arm's `run()` returns, arms alternating order every round,
    after one warm-up call each."""
    for run in arms.values():
        run()
    seconds = {name: [] for name in arms}
    names = list(arms)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            seconds[name].append(arms[name]())
    return {name: statistics.median(values) for name, values in seconds.items()}


def _timed_calls(traced, *args, repeats: int, clock=time.perf_counter):
    """`run() -> seconds per call` of `repeats` calls of `traced(*args)`, fetched at the end,
    by `clock` (wall time, or `time.process_time` for the process's CPU time)."""

    def run():
        started = clock()
        for _ in range(repeats):
            out = traced(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        return (clock() - started) / repeats

    return run


def _layer_arms(precision: str, batch: int, repeats: int) -> tuple[dict, dict, list]:
    """{(precision, layer, kind): run} for one precision's model, its MACs per layer, names."""
    model = models.conv_denoiser(precision).autoencoder
    arms, macs, names = {}, {}, []
    x = tf.random.stateless_uniform([batch, *models.IMAGE_SHAPE], seed=[0, 0])
    for index, layer in enumerate(model.layers[1:]):
        # The layer's input as the model hands it over (bfloat16 after a bfloat16 layer).
        layer_input = tf.cast(
            tf.random.stateless_uniform([batch, *x.shape[1:]], seed=[0, index + 1]), x.dtype
        )

        # The sum of the first example's output stands in for the loss: a whole-batch sum
        # (and, in bfloat16, a cast) would add an op of its own the size of the output.
        def forward(inputs, layer=layer):
            return tf.reduce_sum(tf.cast(layer(inputs)[:1], tf.float32))

        def forward_backward(inputs, layer=layer, first=index == 0):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                total = tf.reduce_sum(tf.cast(layer(inputs)[:1], tf.float32))
            sources = list(layer.trainable_variables) + ([] if first else [inputs])
            return tape.gradient(total, sources) if sources else total

        for kind, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
            run = _timed_calls(tf.function(fn), layer_input, repeats=repeats)
            arms[(precision, layer.name, kind)] = run
        x = layer(x)
        names.append(layer.name)
        if isinstance(layer, keras.layers.Conv2D):
            macs[layer.name] = x.shape[1] * x.shape[2] * conv_multiply_adds_per_pixel(layer)
    return arms, macs, names


def conv_layers(rounds: int, precisions: list[str], batch: int = 128, repeats: int = 10) -> None:
    """Forward and forward+backward time of each conv-denoiser layer alone, per precision."""
    arms, names = {}, []
    for precision in precisions:
        precision_arms, macs, precision_names = _layer_arms(precision, batch, repeats)
        arms.update(precision_arms)
        names += [name for name in precision_names if name not in names]
    medians = interleaved(arms, rounds)
    total_macs = sum(macs.values())
    print(f"conv denoiser layer by layer, batch {batch}: ms per call, fwd / fwd+bwd")
    print(f"  {'layer':<12}" + "".join(f"{p:>22}" for p in precisions) + f"{'MACs':>8}")

    # A layer only one precision has (16-bit models add a float32 sigmoid) counts as 0 in the other.
    def seconds(p, name, kind):
        return medians.get((p, name, kind), 0.0)

    def ms(p, name, kind):
        return seconds(p, name, kind) * 1e3

    step = {p: sum(seconds(p, n, "fwd+bwd") for n in names) for p in precisions}
    for name in names:
        cells = "".join(
            f"{ms(p, name, 'fwd'):10.2f} /{ms(p, name, 'fwd+bwd'):9.2f}" for p in precisions
        )
        print(f"  {name:<12}{cells}{macs.get(name, 0) / total_macs:8.1%}")
    sums = ", ".join(f"{p} {step[p] * 1e3:.1f} ms = {batch / step[p]:,.0f}" for p in precisions)
    print(f"  sum of fwd+bwd: {sums} images/s")


def dense_steps(rounds: int, images: tf.Tensor, calls: int = 10) -> None:
    """The dense model's default train steps fed by the pipeline, against the same steps fed
    one element over and over."""
    config = config_lib.load_config("dense_compress")
    train.set_op_determinism(config.deterministic)
    strategy = distribute.make_strategy()
    keras.utils.set_random_seed(config.seed)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    train_steps = steps.TrainSteps(
        strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
    )
    batches = pipeline.TrainBatches(
        images, config.batch_size, config.seed, 0.0, models.input_shape(config)
    )
    per_call = config.steps_per_loop
    plan = [per_call] * (1 + calls)
    one_element = next(train_steps.epoch_iterator(batches, 0, plan))
    epochs = iter(range(1, 10**6))

    def arm(make_iterator):
        def run():  # the clock starts after a first call has filled the prefetch buffer
            iterator = make_iterator()
            train_steps(iterator, per_call).numpy()
            started = time.perf_counter()
            for _ in range(calls):
                train_steps(iterator, per_call).numpy()
            return time.perf_counter() - started

        return run

    repeated = tf.data.Dataset.from_tensors(one_element).repeat()
    medians = interleaved(
        {
            "pipeline": arm(lambda: train_steps.epoch_iterator(batches, next(epochs), plan)),
            "one element repeated": arm(lambda: iter(repeated)),
        },
        rounds,
    )
    images_per_run = calls * per_call * config.batch_size
    print(f"dense train steps (xla={config.xla}, blocks={train_steps.takes_blocks})")
    for name, seconds in medians.items():
        print(
            f"  {name:<22}{images_per_run / seconds:10,.0f} images/s"
            f"  {seconds / (calls * per_call) * 1e3:5.2f} ms/step"
        )


def tf_data_floor(rounds: int, images: tf.Tensor, batch: int = 256, block: int = 20) -> None:
    """Cost per dataset element of a bare dataset, the dense pipeline's batches and its blocks
    of `block` batches (what the dense XLA steps take per call)."""
    count = images.shape[0] // batch
    blocks = count // block
    indices = tf.reshape(tf.range(count * batch), [count, batch])
    dense = pipeline.TrainBatches(images, batch, 0, 0.0, (784,))

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

    # name: (dataset, warm-up elements, timed elements, batches per element)
    setups = {
        "bare elements": (lambda: tf.data.Dataset.from_tensor_slices(indices), 10, count - 10, 1),
        "dense batches": (lambda: dense.dataset(0), 10, count - 10, 1),
        f"dense blocks of {block}": (
            lambda: dense.dataset(0, block_sizes=[block] * blocks),
            1,
            blocks - 1,
            block,
        ),
    }
    medians = interleaved(
        {name: arm(make, warm, timed) for name, (make, warm, timed, _) in setups.items()}, rounds
    )
    print("tf.data, an epoch's elements drained in a traced loop (us per element, per batch)")
    for name, seconds in medians.items():
        _, _, timed, per_element = setups[name]
        microseconds = seconds / timed * 1e6
        print(f"  {name:<22}{microseconds:8.0f}{microseconds / per_element:8.0f}")


def _op_group(op_type: str) -> str:
    return next((group for group, part in OP_GROUPS if part in op_type), "other ops")


def conv_ops(precisions: list[str], top: int = 6) -> None:
    """Per-op-type time of one conv train step in each precision (TensorFlow's profiler, a
    child process per precision): the groups of OP_GROUPS, then the slowest other op types."""
    op_ms, cpu_ms = {}, {}  # per precision: {op type: ms per step}, and the process's CPU ms
    for precision in precisions:
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.op_times", precision],
            capture_output=True,
            text=True,
            check=True,
        )
        profile = json.loads(child.stdout.strip().splitlines()[-1])
        op_ms[precision], cpu_ms[precision] = profile["ops"], profile["cpu_ms"]
    group_ms = {p: collections.defaultdict(float) for p in precisions}
    for precision, times in op_ms.items():
        for op_type, ms in times.items():
            group_ms[precision][_op_group(op_type)] += ms
    last = precisions[-1]
    slowest_others = sorted(
        (t for t in op_ms[last] if _op_group(t) == "other ops"), key=lambda t: -op_ms[last][t]
    )[:top]

    def print_row(label: str, cells: list[float]) -> None:
        ratio = f"{cells[0] / cells[-1]:9.2f}x" if len(cells) > 1 and cells[-1] else ""
        print(f"  {label:<34}" + "".join(f"{c:16.2f}" for c in cells) + ratio)

    print(
        "TensorFlow ops of one conv train step, batch 128 (ms per step, summed over threads;"
        f" ratio: {precisions[0]}'s time over {last}'s)"
    )
    print(f"  {'':<34}" + "".join(f"{p:>16}" for p in precisions) + "     ratio")
    for group in [*(g for g, _ in OP_GROUPS), "other ops"]:
        print_row(group, [group_ms[p][group] for p in precisions])
    for op_type in slowest_others:
        print_row(f"  {op_type}", [op_ms[p].get(op_type, 0.0) for p in precisions])
    totals = ", ".join(f"{p} {sum(group_ms[p].values()):.1f} ms" for p in precisions)
    cpu = ", ".join(f"{p} {cpu_ms[p]:.1f} ms" for p in precisions)
    print(f"  all ops {totals}; process CPU time per step {cpu}")


def conv_primitives(precision: str) -> None:
    """oneDNN's kernel, time and GFLOP/s for each convolution pass of one conv step."""
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.primitives", precision],
        env={**os.environ, "ONEDNN_VERBOSE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    rows, other_ms = parse_verbose(child.stdout.split(PRIMITIVES_START, 1)[1])
    if not rows:  # e.g. TF_ENABLE_ONEDNN_OPTS=0: Eigen's kernels, no oneDNN log
        print(f"oneDNN primitives ({precision}): none logged (are oneDNN's kernels off?)")
        return
    dtypes = {row.dtype for row in rows}
    peaks = {d: matmul_arm(getattr(tf, d)) for d in dtypes}
    peaks = {d: (run(), run())[1].rate / 1e9 for d, run in peaks.items()}  # after tracing
    print(f"oneDNN convolutions of one conv train step, {precision}, batch 128 (ms per step)")
    header = f"{'convolution':<20}{'pass':<17}{'kernel':<34}{'ms':>7}{'GFLOP/s':>9}"
    print(f"  {header}{'of matmul':>10}")
    for row in rows:
        gflops = row.flop / row.ms / 1e6
        kernel = row.kernel.split("+")[0]  # backward-data's own part (it names two)
        print(
            f"  {row.layer:<20}{row.direction:<17}{kernel:<34}{row.ms:7.2f}{gflops:9.1f}"
            f"{gflops / peaks[row.dtype]:10.0%}"
        )
    print(
        "  (a transposed convolution, as in the fused upsampling layers, runs as the backward_data"
        " pass of the convolution it transposes, and is named by that convolution's shape)"
    )
    conv_ms = sum(row.ms for row in rows)
    print(f"  convolutions {conv_ms:.1f} ms; reorders, pooling and other oneDNN work")
    print("  " + ", ".join(f"{kind} {ms:.2f} ms" for kind, ms in other_ms.items()))
    matmuls = ", ".join(f"{d} {rate:.0f}" for d, rate in sorted(peaks.items()))
    print(f"  (2048x2048 matmul, GFLOP/s: {matmuls})")


def upsampling_forward(
    rounds: int, precisions: list[str], batch: int = 128, repeats: int = 10
) -> None:
    """Forward time of the fused upsampling's two forms for each filter count and precision."""
    forms = {"transposed": layers.transposed_conv, "by parity": layers.transposed_conv_by_parity}
    arms = {}
    for precision in precisions:
        dtype = keras.mixed_precision.Policy(precision).compute_dtype
        inputs = tf.cast(tf.random.stateless_normal([batch, 14, 14, 32], seed=[0, 1]), dtype)
        for filters in UPSAMPLING_FILTERS:
            kernel = tf.cast(tf.random.stateless_normal([4, 4, filters, 32], [0, 2]), dtype)
            for form, fn in forms.items():
                run = _timed_calls(tf.function(fn), inputs, kernel, repeats=repeats)
                arms[(precision, filters, form)] = run
    medians = interleaved(arms, rounds)
    print(f"fused upsampling's forward pass, batch {batch}, 14x14x32 -> 28x28 (ms per call)")
    print(f"  {'filters':<9}" + "".join(f"{p + ': ' + f:>30}" for p in precisions for f in forms))
    for filters in UPSAMPLING_FILTERS:
        cells = [medians[(p, filters, f)] * 1e3 for p in precisions for f in forms]
        print(f"  {filters:<9}" + "".join(f"{ms:30.2f}" for ms in cells))
    for precision in precisions:
        faster = [
            f
            for f in UPSAMPLING_FILTERS
            if medians[(precision, f, "by parity")] < medians[(precision, f, "transposed")]
        ]
        print(
            f"  {precision}: by parity faster for filters {faster or 'none'}; the layer takes"
            f" it up to {layers.UpsampledConv2D.PARITY_FORWARD_MAX_FILTERS} filters"
        )


def noise_samplers(rounds: int, batch: int = 128, repeats: int = 50) -> None:
    """CPU time of one training batch's noise with each sampler, beyond a call that only clips
    (the pipeline draws it on the cores the train step runs on)."""
    clean = tf.random.stateless_uniform([batch, 28, 28, 1], seed=[0, 3])
    key = tf.constant([0, 4], tf.int64)
    forms = {
        "clip only": lambda x, _: tf.clip_by_value(x + 0.5 * x, 0.0, 1.0),
        "TensorFlow's normal": lambda x, seed: pipeline.add_noise(x, 0.5, seed),
        "from 16 bits": lambda x, seed: pipeline.add_noise(x, 0.5, seed, from_16_bits=True),
    }
    arms = {
        name: _timed_calls(tf.function(fn), clean, key, repeats=repeats, clock=time.process_time)
        for name, fn in forms.items()
    }
    medians = interleaved(arms, rounds)
    print(f"training noise of one batch ({batch}x28x28x1), CPU ms per call beyond clipping alone")
    for name in list(forms)[1:]:
        print(f"  {name:<22}{(medians[name] - medians['clip only']) * 1e3:8.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.where_time_goes", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--only", default=",".join(PROBES))
    args = parser.parse_args(argv)
    precisions, only = args.precisions.split(","), args.only.split(",")
    for bad in [p for p in precisions if p not in config_lib.PRECISIONS] + [
        o for o in only if o not in PROBES
    ]:
        parser.error(f"unknown precision or probe {bad!r}")
    print(f"CPU: {cpu_lib.this_cpu(onednn=cpu_lib.onednn_enabled()).describe()}\n")
    tf.random.set_seed(0)  # op determinism wants a seed for the random inputs
    images = tf.constant(data_lib.load_fashion_mnist(None).x_train)
    probes = {
        "layers": lambda: conv_layers(args.rounds, precisions),
        "dense": lambda: dense_steps(args.rounds, images),
        "tf.data": lambda: tf_data_floor(args.rounds, images),
        "ops": lambda: conv_ops(precisions),
        "primitives": lambda: [conv_primitives(p) for p in precisions],
        "upsampling": lambda: upsampling_forward(args.rounds, precisions),
        "noise": lambda: noise_samplers(args.rounds),
    }
    for name in only:
        probes[name]()
        print()


if __name__ == "__main__":
    main()
