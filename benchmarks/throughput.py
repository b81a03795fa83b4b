"""Training throughput of autoenc's loop against Keras `model.fit`, side by side on this machine.

Command (from the repository root; about 12 minutes on 2 cores, 3 with --quick):

    python benchmarks/throughput.py [--config=dense_compress|conv_denoise|all] [--pairs=N]
                                    [--out=FILE.json] [--quick] [--no-wait] [--no-variants]

It first waits while pytest, launch.py or .ci/run is running (they would share the 2 cores).
Arms, per config (with `--config=all`, each config in its own process, so that its peak RSS is
its own):

  ours      autoenc's loop, built from the library's pieces as `autoenc.train` builds them: the
            strategy, the model, the optimizer built in its scope, `steps.make_train_steps`
            (with `jit_compile=config.xla`), `pipeline.train_dataset` and
            `distribute.distribute_dataset`, then `train_steps(iterator, steps_per_loop)` called
            again and again. The config's defaults, op determinism included.
  variants  (unless --no-variants) the speed switches, each its own `ours` with one or two
            config fields changed (`VARIANTS`: xla flipped, steps_per_loop=100, both, bf16,
            deterministic=false), from the same initial weights, measured in the same rounds.
            Op determinism is process-wide, so every arm sets it as its config says before each
            measurement: the default arms (and fit) run with it on, as users get them; the conv
            `xla` arm and `nondet` with it off (its kernels are made in its first call, under its
            own setting). Variants with the default steps_per_loop train exactly the steps and
            batches `ours` trains, so their mean losses are compared round by round (`loss_diff`,
            relative); `benchmarks/same_answers.py` checks val_loss after real training.
  fit_tf_defaults
            `fit` as below, as a reader of the book runs it: in its own Python process started
            with the environment as given, so at TensorFlow's defaults (on this AVX2 CPU:
            oneDNN kernels off, op determinism off, glibc's malloc arenas). Every other arm runs
            in this process with the settings launch.py applies before TensorFlow starts
            (`autoenc.command_line.configure_process`: oneDNN on, one malloc arena), so `fit`
            against `ours` is the loop alone and `fit_tf_defaults` against `ours` is what a
            user gains by switching. The fit process is driven one measurement at a time
            through a pipe, in the same interleaved rounds.
  fit       Keras `model.fit` on a fresh copy of the same architecture with the same initial
            weights, compiled as the book compiles it (Adadelta at learning rate 1.0, binary
            cross-entropy), with the same global batch, on numpy arrays: the clean images as
            input and target (dense), or noisy inputs precomputed once (conv). `fit` has no
            on-the-fly noise, so its noise is the same every epoch and costs it nothing per step.
  clean     (conv) ours with noise_factor 0: with `ours`, the end-to-end cost of the noise.
  pipeline  `pipeline.train_dataset` drained by a traced loop with no model, as `ours` takes
            it (a call's batches one by one, or, for the dense model's XLA steps, one block of
            them per call), a whole epoch per iterator, for at least 1 s (0.3 s --quick)
            (conv: also `pipeline_clean`, without the noise).
  matmul    (conv) a 2048x2048 float32 matmul in a `tf.function`, best of 3 calls: the
            machine's attainable float32 rate. The 40% target puts the conv step's median
            GFLOP/s against the best matmul of the run (a matmul measured in a slow stretch
            would flatter a per-round ratio; that ratio is shown too, as conv_over_matmul).

How it measures: one warm-up measurement of every arm (tracing, first calls), then `--pairs`
rounds, each running every arm once, in reverse order on odd rounds (A B ... B A), so drift
hits every arm alike. A training measurement times the same number of optimizer steps in
steady state: the clock starts after a first block of `steps_per_loop` steps, so iterator
creation, prefetch filling and `fit`'s per-call setup fall before it (shown apart as "setup",
in seconds per call). `fit` is clocked by a callback on `on_train_batch_begin` and
`on_epoch_end`, which leaves Keras' asynchronous batch-end dispatch on, as it is without
callbacks. Column "others" is the most cores that other processes (or the hypervisor, as steal)
kept busy during any of an arm's measurements, from /proc/stat; above 0.25 the table warns.

How to read it: this machine's speed drifts by 10-30% between stretches of tens of seconds
even when nothing else runs (and halves when a test suite does), so compare only numbers of the
same round: every ratio is taken per round, and the table shows its median and each round's.
A difference of a few percent between two arms (the noise cost) is within that drift; its
floor, `noise_alone_share`, is the noise's own time per image (pipeline alone, noisy less
clean) over a training step's time per image. GFLOP/s counts 6 FLOP per forward multiply-add
(forward, input gradient, weight gradient) from the layer shapes. Peak RSS is `ru_maxrss`:
"ours only" is read after our loop's warm-up and before `fit`'s arrays and model exist (it is
not a whole training run's: that adds evaluation, checkpoints, summaries and figures),
"process" at the end. Targets are issue 6's.
"""

import argparse
import copy
import dataclasses
import datetime
import itertools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, Python puts benchmarks/ on the path, not the repository: put the repository
# first, so this tree's autoenc is measured rather than whichever one pip installed.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's start-up INFO lines
from autoenc.command_line import configure_process  # noqa: E402

# `fit` as the book's reader runs it gets a process of its own with the environment as given
# (TensorFlow's defaults); every other arm runs with the process settings launch.py sets.
FIT_WORKER = "--fit-worker"
ENV_AS_GIVEN = dict(os.environ)
if FIT_WORKER not in sys.argv:
    configure_process()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoenc import config as config_lib  # noqa: E402
from autoenc import data as data_lib  # noqa: E402
from autoenc import distribute, models, pipeline, steps, train  # noqa: E402

CONFIGS = ("dense_compress", "conv_denoise")
# Timed steps per measurement (full, --quick): a multiple of every arm's steps_per_loop (20,
# and 100 for the long-loop variants, which --quick leaves out where it does not divide). When
# the first untimed call and the timed steps exceed an epoch's whole calls (220 steps for dense
# at batch 256 in calls of 20, 460 for conv at 128), the measurement's iterator runs through
# consecutive epochs.
TIMED_STEPS = {"dense_compress": (200, 100), "conv_denoise": (100, 20)}
# Rounds (full, --quick); conv's are fewer with the variants, to keep the run near 12 minutes.
DEFAULT_PAIRS = {"dense_compress": (7, 2), "conv_denoise": (3, 2)}
DEFAULT_PAIRS_WITHOUT_VARIANTS = {"dense_compress": (7, 2), "conv_denoise": (7, 2)}
LONG_LOOP = 100  # steps_per_loop of the long-loop variants
# The speed switches (issue 6): arm name -> config fields it changes. The conv model's XLA
# needs op determinism off (autoenc.config.validate: no deterministic MaxPool gradient).
VARIANTS = {
    "dense_compress": {  # its default has xla on: the plain loop is the variant
        "no_xla": dict(xla=False),
        f"spl{LONG_LOOP}": dict(steps_per_loop=LONG_LOOP),
        f"no_xla+spl{LONG_LOOP}": dict(xla=False, steps_per_loop=LONG_LOOP),
        "bf16": dict(precision="mixed_bfloat16"),
    },
    "conv_denoise": {
        "xla": dict(xla=True, deterministic=False),
        f"spl{LONG_LOOP}": dict(steps_per_loop=LONG_LOOP),
        "bf16": dict(precision="mixed_bfloat16"),
        "nondet": dict(deterministic=False),
    },
}
# Variants too slow here to time like the others: (config, arm) -> (timed steps, rounds full,
# rounds --quick). On this CPU (no bf16 units) mixed_bfloat16 conv runs many times slower than
# float32; it is timed over one block after the first, in the first rounds only (its ratios
# pair it with those rounds), and its first call (its warm-up) is one block after the first.
SLOW_VARIANTS = {("conv_denoise", "bf16"): (20, 2, 1)}
PIPELINE_SECONDS = (1.0, 0.3)  # timed seconds per pipeline-alone measurement, at least
OTHERS_WARNING = 0.25  # cores kept busy by other processes during a measurement, at most
MATMUL_SIZE = 2048
# Processes that would share the 2 cores: CI, the test suite, a training run.
RIVALS = r"pytest|launch\.py|\.ci/run|same_answers\.py"
# Issue 6's targets: (what, summary key, sense, bound, format of the measured value).
TARGETS = {
    "dense_compress": [
        ("ours / fit", "ours_over_fit", ">=", 3.0, ".2f"),
        ("ours / fit at TF defaults", "ours_over_fit_tf_defaults", ">=", 3.0, ".2f"),
        ("pipeline alone / training", "pipeline_over_ours", ">=", 10.0, ".2f"),
    ],
    "conv_denoise": [
        ("ours / fit", "ours_over_fit", ">=", 1.5, ".2f"),
        ("ours / fit at TF defaults", "ours_over_fit_tf_defaults", ">=", 1.5, ".2f"),
        ("conv GFLOP/s / best matmul GFLOP/s", "conv_over_best_matmul", ">=", 0.40, ".1%"),
        ("noise cost, share of step time", "noise_cost", "<=", 0.03, ".1%"),
        ("pipeline alone / training", "pipeline_over_ours", ">=", 10.0, ".2f"),
        ("peak RSS, ours only (GiB)", "rss_ours_gb", "<=", 1.0, ".2f"),
    ],
}


@dataclasses.dataclass
class Timing:
    """One measurement: `work` (images or FLOP) done in `seconds` of steady state."""

    work: float
    seconds: float
    setup: float = 0.0  # the call's time before the clock started, less its steps' share
    loss: float | None = None  # mean training loss over the call's steps (a sanity check)
    others: float = 0.0  # cores that other processes (or the hypervisor) kept busy meanwhile

    @property
    def rate(self) -> float:
        return self.work / self.seconds


def peak_rss_gb() -> float:
    """This process's peak resident set so far, in GiB (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (steal included), and this process's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan"), 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall time of a stretch, and how many cores others kept busy meanwhile (a shared machine)."""

    def __init__(self):
        self.started = time.perf_counter()
        self.cpu = _cpu_seconds()

    def stop(self) -> tuple[float, float]:
        seconds = time.perf_counter() - self.started
        machine_busy, own = (after - before for before, after in zip(self.cpu, _cpu_seconds()))
        return seconds, max(0.0, machine_busy - own) / seconds


def _ancestors() -> set[int]:
    """This process and its parents (a shell whose command line names pytest is not a rival)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def busy_rivals() -> list[str]:
    """Command lines of running test suites or training runs (which would skew the timings)."""
    mine, rivals = _ancestors(), []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(cmdline.parent.name) not in mine and re.search(RIVALS, command):
            rivals.append(command.strip())
    return rivals


def wait_for_quiet_machine() -> None:
    """Waits, polling every 20 s, while `busy_rivals()` finds anything."""
    while rivals := busy_rivals():
        log(f"waiting for {len(rivals)} process(es) to end, e.g. {rivals[0][:100]!r}")
        time.sleep(20)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def forward_macs(model: keras.Model) -> tuple[int, int]:
    """Multiply-adds of one example's forward pass (Conv2D and Dense), and the first layer's.

    Pooling, upsampling, activations and biases are elementwise and left out.
    """
    per_layer = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            rows, cols, channels_in, channels_out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            per_layer.append(height * width * channels_out * rows * cols * channels_in)
        elif isinstance(layer, keras.layers.Dense):
            per_layer.append(layer.kernel.shape[0] * layer.kernel.shape[1])
    return sum(per_layer), per_layer[0]


def machine() -> dict:
    """What the numbers were measured on."""
    flags, model_name = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return dict(
        cpu=model_name,
        logical_cpus=os.cpu_count(),
        cpu_flags={flag: flag in flags for flag in wanted},
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        load_average_1_5_15=list(os.getloadavg()),
    )


class _SteadyClock(keras.callbacks.Callback):
    """Times `fit` from the start of batch `start_batch` to the end of the epoch.

    Only batch-*end* hooks turn off Keras' asynchronous callback dispatch, so this one leaves
    `fit` running as it does with no callbacks.
    """

    def __init__(self, start_batch: int):
        super().__init__()
        self.start_batch = start_batch
        self.stopwatch = self.started = self.seconds = self.others = self.loss = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.start_batch:
            self.stopwatch = Stopwatch()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds, self.others = self.stopwatch.stop()
        self.started = self.stopwatch.started
        self.loss = float(logs["loss"])


def clock_blocks(start: Callable, block: Callable, timed_steps: int, per_call: int, batch: int):
    """Times `timed_steps` steps of `block(iterator)` (`per_call` steps each) after a first one.

    Returns:
        The `Timing` and every block's output. The first, untimed block fills the prefetch
        buffer; it and `start()` (making the iterator) count as setup.
    """
    started = time.perf_counter()
    iterator = start()
    outputs = [block(iterator)]
    stopwatch = Stopwatch()
    outputs += [block(iterator) for _ in range(timed_steps // per_call)]
    seconds, others = stopwatch.stop()
    setup = stopwatch.started - started - seconds * per_call / timed_steps
    return Timing(timed_steps * batch, seconds, setup, others=others), outputs


class OurLoop:
    """autoenc's training loop, assembled from the library's pieces as `autoenc.train` does."""

    def __init__(self, config, train_images: tf.Tensor, initial_weights: list | None = None):
        self.config = config
        self.train_images = train_images
        self.strategy = distribute.make_strategy()
        keras.utils.set_random_seed(config.seed)
        # With initial_weights, a variant starts where the default loop starts.
        nets, optimizer = train.build_model_and_optimizer(config, self.strategy, initial_weights)
        self.model = nets.autoencoder
        self.initial_weights = self.model.get_weights()
        self.train_steps = steps.make_train_steps(
            self.strategy, self.model, optimizer, config.batch_size, jit_compile=config.xla
        )
        self.blocks = steps.trains_on_blocks(self.strategy, self.model, jit_compile=config.xla)

    def iterator(self, epochs, noise_factor: float, num_steps: int = 1):
        """Batches for `num_steps` steps: one epoch, or consecutive ones if it needs more.

        `epochs` is the arm's own counter: a new epoch (order, noise) for every measurement,
        and the n-th measurement of every arm draws the same epochs, so a variant trains the
        batches `ours` trains. Each epoch gives as many whole calls of `steps_per_loop` steps
        as fit; its last few batches are left out (training would run them as a shorter call),
        so every call has the same length, and every arm with the same `steps_per_loop` gets
        the same batches, whether its steps take them one by one or as one block per call
        (`steps.trains_on_blocks`).
        """
        steps_per_epoch = self.train_images.shape[0] // self.config.batch_size
        per_call = self.config.steps_per_loop
        usable = steps_per_epoch // per_call * per_call
        if not usable:
            raise SystemExit(
                f"throughput.py: steps_per_loop {per_call} exceeds an epoch ({steps_per_epoch})"
            )

        def whole_calls(epoch):
            dataset = pipeline.train_dataset(
                self.train_images,
                batch_size=self.config.batch_size,
                epoch=epoch,
                seed=self.config.seed,
                noise_factor=noise_factor,
                input_shape=models.input_shape(self.config),
                block_sizes=[per_call] * (usable // per_call) if self.blocks else None,
            )
            return dataset if self.blocks else dataset.take(usable)

        datasets = [whole_calls(next(epochs)) for _ in range(-(-num_steps // usable))]
        dataset = datasets[0]
        for later in datasets[1:]:
            dataset = dataset.concatenate(later)
        return iter(distribute.distribute_dataset(self.strategy, dataset))

    def train_arm(self, noise_factor: float) -> Callable[[int], Timing]:
        """Training, `train_steps(iterator, steps_per_loop)` call after call."""
        per_call = self.config.steps_per_loop
        epochs = itertools.count()

        def run(timed_steps):
            timing, losses = clock_blocks(
                lambda: self.iterator(epochs, noise_factor, per_call + timed_steps),
                lambda iterator: self.train_steps(iterator, tf.constant(per_call)).numpy(),
                timed_steps,
                per_call,
                self.config.batch_size,
            )
            losses = np.concatenate(losses)
            if not np.all(np.isfinite(losses)):
                raise RuntimeError(f"non-finite training loss: {losses}")
            timing.loss = float(np.mean(losses))
            return timing

        return run

    def pipeline_arm(self, noise_factor: float, min_seconds: float) -> Callable[[int], Timing]:
        """The same batches drained by a traced loop like `train_steps`', with no model: a
        call's batches one by one, or its one block when the steps take blocks.

        One measurement drains fresh iterators, each for an epoch's batches after the first
        block, until at least `min_seconds` were timed: one epoch alone can take a tenth of a
        second, too short to time well (or to tell whether another process ran meanwhile).
        """
        per_call = self.config.steps_per_loop
        steps_per_epoch = self.train_images.shape[0] // self.config.batch_size
        batches = (steps_per_epoch - per_call) // per_call * per_call
        epochs = itertools.count()
        elements_per_call = tf.constant(1 if self.blocks else per_call)

        @tf.function
        def drain(iterator, num_elements):
            total = tf.constant(0.0)
            for _ in tf.range(num_elements):
                for tensor in tf.nest.flatten(next(iterator), expand_composites=True):
                    # touch each batch (uint8 or float); the loop is the cost
                    total += tf.cast(tf.reduce_sum(tensor[:1]), tf.float32)
            return total

        def run(_timed_steps):
            timings, seconds = [], 0.0
            while seconds < min_seconds:
                timing, _ = clock_blocks(
                    lambda: self.iterator(epochs, noise_factor),
                    lambda iterator: drain(iterator, elements_per_call).numpy(),
                    batches,
                    per_call,
                    self.config.batch_size,
                )
                timings.append(timing)
                seconds += timing.seconds
            return Timing(
                work=sum(t.work for t in timings),
                seconds=seconds,
                setup=statistics.mean(t.setup for t in timings),
                others=sum(t.others * t.seconds for t in timings) / seconds,
            )

        return run


def fit_arm(config, x_train: np.ndarray, initial_weights: list) -> Callable[[int], Timing]:
    """Keras `fit` on a fresh copy of the model, compiled with the book's settings."""
    input_shape = models.input_shape(config)
    clean = x_train.reshape(-1, *input_shape).astype(np.float32) / 255.0
    inputs = clean
    if config.noise_factor:  # the book's way: one noisy copy of the data, made up front
        noise = np.random.default_rng(config.seed).standard_normal(clean.shape, np.float32)
        inputs = np.clip(clean + config.noise_factor * noise, 0.0, 1.0)
        del noise
    model = models.build(config).autoencoder
    model.set_weights(initial_weights)
    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="binary_crossentropy"
    )
    per_call = config.steps_per_loop

    def run(timed_steps):
        clock = _SteadyClock(start_batch=per_call)  # the same first untimed block as ours
        started = time.perf_counter()
        model.fit(
            inputs,
            clean,
            batch_size=config.batch_size,
            epochs=1,
            steps_per_epoch=per_call + timed_steps,
            shuffle=True,
            verbose=0,
            callbacks=[clock],
        )
        setup = clock.started - started - clock.seconds * per_call / timed_steps
        return Timing(
            timed_steps * config.batch_size, clock.seconds, setup, clock.loss, clock.others
        )

    run.jit_compile = bool(model.jit_compile)
    return run


class FitProcess:
    """Keras `fit` as a reader of the book runs it: in a Python process of its own started with
    the environment as given, so at TensorFlow's defaults (oneDNN as TensorFlow decides for this
    CPU, glibc's malloc arenas, op determinism off) rather than launch.py's settings. Driven one
    measurement at a time through a pipe (this process waits, idle, meanwhile), so it takes its
    place in the interleaved rounds like any other arm."""

    def __init__(self, name: str, initial_weights: list):
        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as weights:
            np.savez(weights, *initial_weights)
        self.weights_path = weights.name
        self.process = subprocess.Popen(
            [sys.executable, __file__, FIT_WORKER, f"--config={name}", f"--weights={weights.name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV_AS_GIVEN,
        )
        self.facts = self._reply()
        self.jit_compile = self.facts["jit_compile"]

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fit process ended (exit code {self.process.wait()})")
        reply = json.loads(line)
        self.peak_rss_gb = reply.pop("peak_rss_gb")
        return reply

    def __call__(self, timed_steps: int) -> Timing:
        self.process.stdin.write(f"{timed_steps}\n")
        self.process.stdin.flush()
        return Timing(**self._reply())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        os.unlink(self.weights_path)


def fit_worker(name: str, weights_path: str) -> None:
    """The other end of `FitProcess`: one JSON line when ready, then one per measurement."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout goes to stderr, not into the replies
    config = config_lib.load_config(name)
    data = data_lib.load_fashion_mnist(config.data_dir or None)
    with np.load(weights_path) as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    run = fit_arm(config, data.x_train, weights)
    del data

    def reply(**fields):
        print(json.dumps(dict(fields, peak_rss_gb=peak_rss_gb())), file=replies, flush=True)

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset: TensorFlow decides by the CPU")
    reply(jit_compile=run.jit_compile, tf_enable_onednn_opts=onednn)
    for line in sys.stdin:
        reply(**dataclasses.asdict(run(int(line))))


def under_determinism(run: Callable[[int], Timing], enabled: bool) -> Callable[[int], Timing]:
    """`run`, with op determinism set as `enabled` says before each call."""

    def wrapped(timed_steps):
        train.set_op_determinism(enabled)
        return run(timed_steps)

    wrapped.__dict__.update(run.__dict__)
    return wrapped


def only_first_rounds(run: Callable[[int], Timing], timed_steps: int, rounds: int):
    """`run` timing `timed_steps` whatever it is asked, measured in the first `rounds` rounds
    only, with no warm-up of its own (its first call, made at build time, was one)."""

    def wrapped(_timed_steps):
        return run(timed_steps)

    wrapped.__dict__.update(run.__dict__)
    wrapped.max_rounds, wrapped.warmed = rounds, True
    return wrapped


def variant_config(config, overrides: dict):
    """A copy of `config` with `overrides`, validated as `autoenc.train` validates it."""
    variant = copy.deepcopy(config)
    variant.update(overrides)
    config_lib.validate(variant)
    return variant


def make_arms(config, name: str, quick: bool, variants: bool) -> tuple[dict, dict]:
    """Builds every arm of one config: {arm: run(timed_steps) -> Timing}, and facts about it."""
    train.set_op_determinism(config.deterministic)  # as autoenc.train does; process-wide
    data = data_lib.load_fashion_mnist(config.data_dir or None)
    train_images = tf.constant(data.x_train)
    loop = OurLoop(config, train_images)
    ours = under_determinism(loop.train_arm(config.noise_factor), config.deterministic)
    ours(2 * config.steps_per_loop)  # trace, then read the RSS before fit's arrays exist
    rss_ours = peak_rss_gb()

    def default_arm(run):  # fit and the other arms run as the config says, determinism too
        return under_determinism(run, config.deterministic)

    # In this order, reversed on odd rounds: ours sits next to fit and to clean both ways.
    arms = {
        "fit_tf_defaults": FitProcess(name, loop.initial_weights),
        "fit": default_arm(fit_arm(config, data.x_train, loop.initial_weights)),
        "ours": ours,
    }
    if config.noise_factor:
        # Its own model from the same weights: trained by `ours`' model, it would move the
        # weights under `ours` and the variants could no longer be compared with it.
        clean_loop = OurLoop(config, train_images, loop.initial_weights)
        arms["clean"] = default_arm(clean_loop.train_arm(0.0))
    timed_steps = TIMED_STEPS[name][quick]
    variant_facts = {}
    for variant, overrides in (VARIANTS[name] if variants else {}).items():
        vconfig = variant_config(config, overrides)
        if timed_steps % vconfig.steps_per_loop:
            log(f"  {variant}: left out, {timed_steps} timed steps is not a multiple of its loop")
            continue
        log(f"  building {variant} ({overrides})")
        vloop = OurLoop(vconfig, train_images, loop.initial_weights)
        arms[variant] = under_determinism(
            vloop.train_arm(config.noise_factor), vconfig.deterministic
        )
        slow = SLOW_VARIANTS.get((name, variant))
        same_steps = vconfig.steps_per_loop == config.steps_per_loop and (
            not slow or slow[0] == timed_steps
        )
        if slow:
            arms[variant](vconfig.steps_per_loop)
            arms[variant] = only_first_rounds(arms[variant], slow[0], slow[1 + quick])
        elif same_steps:  # the same first call as ours: then both train the same batches
            arms[variant](2 * config.steps_per_loop)
        variant_facts[variant] = dict(
            overrides=overrides,
            steps_per_loop=vconfig.steps_per_loop,
            deterministic=bool(vconfig.deterministic),
            xla=bool(vconfig.xla),
            precision=vconfig.precision,
            same_steps_as_ours=same_steps,
            timed_steps=slow[0] if slow else timed_steps,
            rounds=slow[1 + quick] if slow else None,
        )
    arms["pipeline"] = default_arm(loop.pipeline_arm(config.noise_factor, PIPELINE_SECONDS[quick]))
    if config.noise_factor:
        arms["pipeline_clean"] = default_arm(loop.pipeline_arm(0.0, PIPELINE_SECONDS[quick]))
    if config.model == "conv":
        arms["matmul"] = default_arm(matmul_arm())

    macs, first_layer_macs = forward_macs(loop.model)
    facts = dict(
        global_batch=config.batch_size,
        steps_per_loop=config.steps_per_loop,
        steps_per_epoch=len(data.x_train) // config.batch_size,
        timed_steps=timed_steps,
        replicas=loop.strategy.num_replicas_in_sync,
        forward_macs_per_image=macs,
        train_flop_per_image=6 * macs,
        # The first layer's input gradient is never needed (the images are not trained).
        train_flop_per_image_needed=6 * macs - 2 * first_layer_macs,
        rss_ours_gb=rss_ours,
        keras_fit_jit_compile=arms["fit"].jit_compile,
        fit_tf_defaults=arms["fit_tf_defaults"].facts,
        deterministic=bool(config.deterministic),
        xla=bool(config.xla),
        precision=config.precision,
        variants=variant_facts,
    )
    return arms, facts


def matmul_arm(size: int = MATMUL_SIZE, calls: int = 3) -> Callable[[int], Timing]:
    """A `size`x`size` float32 matmul in a `tf.function`; each measurement is the best of calls."""
    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2])
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))

    def run(_timed_steps):
        best, stopwatch = float("inf"), Stopwatch()
        for _ in range(calls):
            started = time.perf_counter()
            product().numpy()
            best = min(best, time.perf_counter() - started)
        return Timing(2 * size**3, best, others=stopwatch.stop()[1])

    return run


def measure(arms: dict, timed_steps: int, warm_steps: int, pairs: int) -> dict[str, list[Timing]]:
    """Warms every arm up once, then runs `pairs` rounds of all arms, reversed on odd rounds.

    The warm-up is `warm_steps` (the default steps_per_loop) after the first block: for a
    long-loop arm, its first block alone.
    """
    for name, run in arms.items():
        if not getattr(run, "warmed", False):
            log(f"  warm-up {name}")
            run(warm_steps)
    results = {name: [] for name in arms}
    names = list(arms)
    for round_index in range(pairs):
        for name in names if round_index % 2 == 0 else reversed(names):
            if round_index >= getattr(arms[name], "max_rounds", pairs):
                continue
            timing = arms[name](timed_steps)
            results[name].append(timing)
            unit = "GFLOP/s" if name == "matmul" else "images/s"
            scale = 1e9 if name == "matmul" else 1.0
            log(
                f"  round {round_index + 1}/{pairs}  {name:<15}{timing.rate / scale:12,.0f} {unit}"
                f"  (others busy: {timing.others:.2f} cores)"
            )
    return results


def summarize(name: str, results: dict[str, list[Timing]], facts: dict) -> dict:
    """Per-round ratios and their medians, raw timings, and the targets' verdicts."""

    def rates(arm):
        return [t.rate for t in results[arm]]

    def per_round(numerator, denominator):
        return [a / b for a, b in zip(numerator, denominator)]

    ours = rates("ours")
    ratios = {
        "ours_over_fit": per_round(ours, rates("fit")),
        "ours_over_fit_tf_defaults": per_round(ours, rates("fit_tf_defaults")),
        "pipeline_over_ours": per_round(rates("pipeline"), ours),
    }
    if "clean" in results:
        # Share of a noisy step's time that the noise adds: 1 - t_clean / t_noisy.
        ratios["noise_cost"] = [1 - r for r in per_round(ours, rates("clean"))]
        ratios["pipeline_noise_cost"] = [
            1 - r for r in per_round(rates("pipeline"), rates("pipeline_clean"))
        ]
        # The noise's own time per image (pipeline alone, noisy less clean) over a training
        # step's time per image: its share of step time were it not overlapped with training.
        ratios["noise_alone_share"] = [
            (1 / noisy - 1 / clean) * train
            for noisy, clean, train in zip(rates("pipeline"), rates("pipeline_clean"), ours)
        ]
    if "matmul" in results:
        conv_flops = [rate * facts["train_flop_per_image"] for rate in ours]
        ratios["conv_over_matmul"] = per_round(conv_flops, rates("matmul"))
    summary = dict(
        facts,
        arms={
            arm: dict(
                median_rate=statistics.median(t.rate for t in timings),
                rates=[t.rate for t in timings],
                seconds=[t.seconds for t in timings],
                median_setup_seconds=statistics.median(t.setup for t in timings),
                losses=[t.loss for t in timings],
                others_cores=[t.others for t in timings],
            )
            for arm, timings in results.items()
        },
        ratios={key: dict(median=statistics.median(v), per_round=v) for key, v in ratios.items()},
        rss_process_gb=peak_rss_gb(),
        others_cores_max=max(t.others for timings in results.values() for t in timings),
    )
    fit = rates("fit")
    variants = {}
    for variant, vfacts in facts["variants"].items():
        rate = rates(variant)
        over_fit, over_ours = per_round(rate, fit), per_round(rate, ours)
        entry = dict(
            vfacts,
            median_rate=statistics.median(rate),
            over_fit=dict(median=statistics.median(over_fit), per_round=over_fit),
            over_ours=dict(median=statistics.median(over_ours), per_round=over_ours),
        )
        if vfacts["same_steps_as_ours"]:  # the same batches from the same weights as ours
            diffs = [t.loss / o.loss - 1 for t, o in zip(results[variant], results["ours"])]
            entry["loss_diff"] = dict(max_abs=max(abs(d) for d in diffs), per_round=diffs)
        variants[variant] = entry
    summary["variants"] = variants
    if "matmul" in results:
        median_flops = statistics.median(ours) * facts["train_flop_per_image"]
        summary["conv_gflops_median"] = median_flops / 1e9
        summary["matmul_gflops_best"] = max(rates("matmul")) / 1e9
        # The target's yardstick is the best matmul of the run, the machine's attainable rate:
        # a matmul caught in a slow stretch (84 against 145 GFLOP/s in two rounds of one run)
        # would inflate a per-round ratio (`conv_over_matmul`, shown for drift).
        summary["conv_over_best_matmul"] = median_flops / 1e9 / summary["matmul_gflops_best"]
    for arm in ("ours", "fit", *variants):
        images_per_epoch = facts["steps_per_epoch"] * facts["global_batch"]
        summary["arms"][arm]["epoch_seconds_steady"] = (
            images_per_epoch / summary["arms"][arm]["median_rate"]
        )
    summary["targets"] = []
    for label, key, sense, bound, fmt in TARGETS[name]:
        value = summary["ratios"][key]["median"] if key in summary["ratios"] else summary[key]
        met = value >= bound if sense == ">=" else value <= bound
        summary["targets"].append(
            dict(
                target=f"{label} {sense} {bound:{fmt}}",
                value=value,
                shown=f"{value:{fmt}}",
                met=met,
            )
        )
    return summary


def format_config(name: str, s: dict) -> str:
    """The table of one config's summary."""
    arms, ratios = s["arms"], s["ratios"]
    lines = [
        f"{name}: global batch {s['global_batch']}, {s['timed_steps']} timed steps per"
        f" measurement, {len(arms['ours']['rates'])} rounds, {s['replicas']} replica(s),"
        f" steps_per_loop {s['steps_per_loop']}, op determinism"
        f" {'on' if s['deterministic'] else 'off'}, xla {s['xla']}, {s['precision']}",
        f"  {'arm':<16}{'median':>12}{'min':>12}{'max':>12}  {'setup s':>8}  {'others':>6}  unit",
    ]
    for arm, a in arms.items():
        unit, scale = ("GFLOP/s", 1e9) if arm == "matmul" else ("images/s", 1.0)
        low, high = min(a["rates"]) / scale, max(a["rates"]) / scale
        lines.append(
            f"  {arm:<16}{a['median_rate'] / scale:12,.0f}{low:12,.0f}{high:12,.0f}"
            f"  {a['median_setup_seconds']:8.2f}  {max(a['others_cores']):6.2f}  {unit}"
        )
    lines.append(f"  {'ratio (per round)':<26}{'median':>8}   per round")
    percent = {"noise_cost", "pipeline_noise_cost", "noise_alone_share", "conv_over_matmul"}
    for key, r in ratios.items():
        if key in percent:
            shown = f"{r['median']:7.1%}"
            rounds = " ".join(f"{v:.1%}" for v in r["per_round"])
        else:
            shown = f"{r['median']:7.2f}x"
            rounds = " ".join(f"{v:.2f}" for v in r["per_round"])
        lines.append(f"  {key:<26}{shown:>8}   {rounds}")
    if s["variants"]:
        lines.append(
            f"  {'speed switch':<16}{'images/s':>11}{'/ fit':>8}{'/ ours':>8}  {'loss diff':>9}"
            f"  {'epoch s':>7}  / ours per round"
        )
        for variant, v in s["variants"].items():
            loss = f"{v['loss_diff']['max_abs']:9.1e}" if "loss_diff" in v else f"{'n/a':>9}"
            rounds = " ".join(f"{r:.2f}" for r in v["over_ours"]["per_round"])
            lines.append(
                f"  {variant:<16}{v['median_rate']:11,.0f}{v['over_fit']['median']:7.2f}x"
                f"{v['over_ours']['median']:7.2f}x  {loss}"
                f"  {arms[variant]['epoch_seconds_steady']:7.2f}  {rounds}"
            )
        lines.append(
            "  (medians of per-round ratios; loss diff: largest relative difference of a"
            " round's mean training loss from ours', same steps and batches; n/a: other steps)"
        )
        for variant, v in s["variants"].items():
            if v["rounds"]:
                lines.append(
                    f"  {variant}: too slow to time like the others, {v['timed_steps']} timed"
                    f" steps in the first {v['rounds']} round(s) only"
                )
    ours, fit = arms["ours"], arms["fit"]
    lines.append(
        f"  epoch training seconds at the median steady rate ({s['steps_per_epoch']} steps):"
        f" ours {ours['epoch_seconds_steady']:.1f}, fit {fit['epoch_seconds_steady']:.1f}"
    )
    lines.append(
        f"  mean loss over the last round's steps (a sanity check): ours"
        f" {ours['losses'][-1]:.4f}, fit {fit['losses'][-1]:.4f}"
    )
    if "conv_gflops_median" in s:
        lines.append(
            f"  conv step: {s['train_flop_per_image'] / 1e6:.2f} MFLOP per training image"
            f" (6 x {s['forward_macs_per_image'] / 1e6:.3f} M forward multiply-adds;"
            f" {s['train_flop_per_image_needed'] / 1e6:.2f} without the first layer's unneeded"
            f" input gradient): {s['conv_gflops_median']:.1f} GFLOP/s median;"
            f" matmul best {s['matmul_gflops_best']:.1f} GFLOP/s;"
            f" {s['conv_over_best_matmul']:.1%} of it"
        )
    lines.append(
        f"  peak RSS: ours only {s['rss_ours_gb']:.2f} GiB (before fit's arrays and model),"
        f" process {s['rss_process_gb']:.2f} GiB"
    )
    lines.append(f"  fit: jit_compile={s['keras_fit_jit_compile']} (Keras 3 'auto' on a CPU)")
    lines.append(
        "  fit_tf_defaults: fit in its own process at TensorFlow's defaults (TF_ENABLE_ONEDNN_OPTS"
        f" {s['fit_tf_defaults']['tf_enable_onednn_opts']}, op determinism off), peak RSS"
        f" {s['rss_fit_tf_defaults_gb']:.2f} GiB; every other arm runs with launch.py's settings"
    )
    if s["others_cores_max"] > OTHERS_WARNING:
        lines.append(
            f"  WARNING: other processes kept up to {s['others_cores_max']:.2f} cores busy during"
            " some measurements (column 'others'); rerun on a quiet machine"
        )
    for t in s["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"  target {t['target']:<44} {t['shown']:>8}  {verdict}")
    return "\n".join(lines)


def run_one(name: str, pairs: int | None, quick: bool, wait: bool, variants: bool) -> dict:
    """Measures one config in this process and returns its summary."""
    config = config_lib.load_config(name)
    config_lib.validate(config)
    timed_steps = TIMED_STEPS[name][quick]
    if timed_steps % config.steps_per_loop:
        raise SystemExit(f"{timed_steps} timed steps is not a multiple of steps_per_loop")
    if pairs is None:
        pairs = (DEFAULT_PAIRS if variants else DEFAULT_PAIRS_WITHOUT_VARIANTS)[name][quick]
    if wait:
        wait_for_quiet_machine()
    log(f"{name}: building")
    arms, facts = make_arms(config, name, quick, variants)
    results = measure(arms, timed_steps, config.steps_per_loop, pairs)
    fit_process = arms["fit_tf_defaults"]
    fit_process.close()
    facts["rss_fit_tf_defaults_gb"] = fit_process.peak_rss_gb
    return summarize(name, results, facts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="rounds (default 7 dense, 3 conv, 7 conv with --no-variants; 2 --quick)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="start at once, even while pytest, launch.py or .ci/run is running",
    )
    parser.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the speed switches (VARIANTS) in the same rounds (default: on)",
    )
    parser.add_argument(FIT_WORKER, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fit_worker:
        return fit_worker(args.config, args.weights)
    pairs = args.pairs
    if pairs is not None and pairs < 1:
        parser.error(f"--pairs={pairs}: must be at least 1")
    command = " ".join(["python", "benchmarks/throughput.py", *sys.argv[1:]])
    started = time.perf_counter()
    load_at_start = list(os.getloadavg())

    if args.config != "all":
        summaries = {args.config: run_one(args.config, pairs, args.quick, args.wait, args.variants)}
    else:
        summaries = {}
        for name in CONFIGS:  # one process each, so that each has its own peak RSS
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "one.json"
                child = [sys.executable, __file__, f"--config={name}", f"--out={out}"]
                child += [] if pairs is None else [f"--pairs={pairs}"]
                child += ["--quick"] if args.quick else []
                child += [] if args.wait else ["--no-wait"]
                child += [] if args.variants else ["--no-variants"]
                subprocess.run(child, check=True, stdout=subprocess.DEVNULL, env=ENV_AS_GIVEN)
                summaries[name] = json.loads(out.read_text())["configs"][name]

    report = dict(
        command=command,
        load_average_at_start=load_at_start,
        machine=machine(),
        wall_seconds=time.perf_counter() - started,
        configs=summaries,
    )
    m = report["machine"]
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["cpu_flags"].items())
    print(f"{command}\n{m['date']}  {m['cpu']}, {m['logical_cpus']} logical CPUs ({flags})")
    print(f"TF {m['tensorflow']}, Keras {m['keras']}, Python {m['python']}")
    load = lambda values: "/".join(f"{v:.2f}" for v in values)  # noqa: E731
    print(
        f"load average (1/5/15 min): {load(load_at_start)} at start,"
        f" {load(m['load_average_1_5_15'])} at end\n"
    )
    for name, summary in summaries.items():
        print(format_config(name, summary) + "\n")
    print(f"wall time {report['wall_seconds'] / 60:.1f} min; JSON: {args.out}")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
