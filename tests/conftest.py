"""Shared test setup: four logical CPU devices (so MirroredStrategy gets real replicas) and tiny
synthetic Fashion-MNIST stand-ins. Devices must be split before TensorFlow initialises them.

On a machine with GPUs the replica tests run on the GPUs instead (as many as there are; a test
needing more is skipped), with TensorFloat-32 off: TF32 rounds matmul and conv inputs to 10
mantissa bits, which would hide a replica bug under rounding noise. So on a GPU machine
`python -m pytest tests/test_replicas.py` checks 1/2/4-GPU equivalence there.
"""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from autoenc.command_line import configure_process  # noqa: E402

configure_process()  # the kernels and allocator launch.py runs with, before TensorFlow starts

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoenc import data as data_lib  # noqa: E402
from autoenc import distribute  # noqa: E402
from autoenc.data import FashionMNIST  # noqa: E402

LOGICAL_CPUS = 4
distribute.configure_cpu_devices(LOGICAL_CPUS)
if tf.config.list_physical_devices("GPU"):
    tf.config.experimental.enable_tensor_float_32_execution(False)


def mirrored(replicas: int) -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over the first `replicas` GPUs, or logical CPU devices without GPUs.

    It uses the same all-reduce as production (CollectiveAllReduce), but gives each strategy
    its own range of collective group keys: strategies of different sizes in one process
    would otherwise both claim group key 1 and abort ("joining a group with size 4, but that
    group has size 2"). A real run has a single strategy, so only tests need this.
    """
    from tensorflow.python.distribute import cross_device_ops, cross_device_utils

    available = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(available) < replicas:
        pytest.skip(f"needs {replicas} devices, this machine has {len(available)}")
    devices = [d.name for d in available[:replicas]]
    _strategies_made[0] += 1
    all_reduce = cross_device_ops.CollectiveAllReduce(
        devices=devices,
        group_size=replicas,
        options=tf.distribute.experimental.CommunicationOptions(),
        collective_keys=cross_device_utils.CollectiveKeys(
            group_key_start=1 + 10_000 * _strategies_made[0]
        ),
    )
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=all_reduce)


_strategies_made = [0]


def synthetic_images(count: int, seed: int) -> np.ndarray:
    """Garment-like uint8 images: a bright blob of random size on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(9, 19, size=(count, 2, 1, 1))
    radii = rng.uniform(4, 10, size=(count, 1, 1))
    inside = (yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2 < radii**2
    texture = rng.uniform(120, 255, size=(count, 28, 28))
    return np.where(inside, texture, 0).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_data() -> FashionMNIST:
    """512 training and 256 test images (labels unused by autoencoders)."""
    return FashionMNIST(
        x_train=synthetic_images(512, seed=1),
        y_train=np.zeros(512, np.uint8),
        x_test=synthetic_images(256, seed=2),
        y_test=np.zeros(256, np.uint8),
    )


ROOT = pathlib.Path(__file__).resolve().parent.parent
HAVE_REAL_DATA = all((data_lib.DEBIAN_DIR / name).exists() for name in data_lib.FILES)
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a test skipped for want of the real Fashion-MNIST fails instead: CI
    installs the data set (.ci/run), so its absence is a broken set-up, not a reason to skip."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and "fashion-mnist" in str(report.longrepr).lower():
        report.outcome = "failed"
        report.longrepr = f"CI=true, but the real Fashion-MNIST is missing: {report.longrepr}"


def launch(*args, timeout=300) -> subprocess.CompletedProcess:
    """`python launch.py ARGS` from the repository root, as a user runs it; output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
