"""launch.py's process settings: what `configure_process` sets before TensorFlow starts, and
that a value the user exported wins. Each case runs in a fresh interpreter, since the settings
only mean anything before TensorFlow loads."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

PROBE = (
    "import os; from autoenc.command_line import configure_process; configure_process();"
    " import tensorflow as tf; from tensorflow.python.util import _pywrap_util_port as port;"
    " print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())"
)


@pytest.mark.parametrize(
    "exported, expected",
    [
        (None, "1 True"),  # our default: oneDNN's kernels on, whatever TF picks for the CPU
        ("0", "0 False"),  # the user's choice stands
    ],
)
def test_onednn_is_on_unless_the_user_says_otherwise(exported, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if exported is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = exported
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == expected


def test_configs_load_by_name_without_an_installed_configs_package(tmp_path):
    probe = (
        "import importlib.util, sys; from autoenc import config;"
        " installed = importlib.util.find_spec('configs');"
        " print(installed is None, config.load_config('dense_compress_768').encoding_dim)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "768"]  # not importable, yet names still resolve
