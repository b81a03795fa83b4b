"""The real `tensorboard` server on two short runs: what a user's browser would be sent.

Two dense runs that differ in encoding_dim are trained into one parent directory; TensorBoard
serves it on a loopback port the OS picks, and its HTTP API must list the plugins and return
each run's scalars, image grids, graph, histograms and one HParams session per run.
"""

import csv
import json
import struct

import pytest
import tensorboard_server
from conftest import mirrored
from tensorboard_server import get, get_json

from autoenc import train
from configs import dense_compress


@pytest.fixture(scope="module")
def logdir(tmp_path_factory, tiny_data):
    """runs/dim16 and runs/dim32: 2 epochs each; dim16 also writes weight histograms."""
    runs = tmp_path_factory.mktemp("runs")
    for dim in (16, 32):
        config = dense_compress.get_config()
        config.update(batch_size=64, epochs=2, encoding_dim=dim, histograms=dim == 16)
        train.train_and_evaluate(config, runs / f"dim{dim}", data=tiny_data, strategy=mirrored(1))
    return runs


@pytest.fixture(scope="module")
def server(logdir, tmp_path_factory):
    """A TensorBoard process on `logdir`, stopped afterwards."""
    with tensorboard_server.running(logdir, tmp_path_factory.mktemp("tensorboard") / "log") as s:
        yield s


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])  # the IHDR chunk: width, height


def test_tensorboard_serves_scalars_images_graph_histograms_and_hparams(server, logdir):
    url = server.url

    def scalars():
        points = get_json(f"{url}/data/plugin/scalars/scalars?run=dim32/validation&tag=epoch_loss")
        return points if len(points) == 2 else None

    # It answers before it has read every file: poll until the run's two epochs are there.
    points = server.poll(scalars)
    with open(logdir / "dim32" / "history.csv") as f:
        val_losses = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert [step for _, step, _ in points] == [1, 2]
    assert [value for _, _, value in points] == pytest.approx(val_losses, rel=1e-6)

    plugins = get_json(f"{url}/data/plugins_listing")
    enabled = {name for name, plugin in plugins.items() if plugin["enabled"]}
    assert {"scalars", "images", "graphs", "histograms", "hparams"} <= enabled

    runs = set(get_json(f"{url}/data/runs"))
    assert {"dim16", "dim16/train", "dim16/validation", "dim32", "dim32/train"} <= runs

    images = get_json(f"{url}/data/plugin/images/images?run=dim32/validation&tag=reconstructions")
    assert [image["step"] for image in images] == [1, 2]
    png = get(f"{url}/data/plugin/images/individualImage?{images[-1]['query']}")
    assert png_size(png) == (8 * 28, 2 * 28)  # original | reconstructed, 8 images

    graph = get(f"{url}/data/plugin/graphs/graph?run=dim32/train").decode()
    assert 'op: "While"' in graph and 'op: "IteratorGetNext"' in graph

    histograms = get_json(
        f"{url}/data/plugin/histograms/histograms?run=dim16/train&tag=encode/kernel/histogram"
    )
    assert [entry[1] for entry in histograms] == [1, 2]

    experiment = get_json(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"]: info for info in experiment["hparamInfos"]}
    assert hparams["encoding_dim"]["differs"] and not hparams["model"]["differs"]
    metric_names = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("", "test_psnr"), ("", "best_val_loss"), ("validation", "epoch_loss")} <= metric_names

    # Our sessions have no end record, so their status is STATUS_UNKNOWN; an empty list of
    # allowed statuses would filter every session out.
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    query = dict(experimentName="", startIndex=0, sliceSize=10, allowedStatuses=statuses)
    groups = get_json(f"{url}/data/plugin/hparams/session_groups", query)["sessionGroups"]
    assert len(groups) == 2  # one row per workdir
    for group in groups:
        dim = int(group["hparams"]["encoding_dim"])
        metrics = json.loads((logdir / f"dim{dim}" / "metrics.json").read_text())
        values = {
            m["name"]["tag"]: m["value"] for m in group["metricValues"] if not m["name"]["group"]
        }
        assert values["test_psnr"] == pytest.approx(metrics["test"]["psnr"], rel=1e-6)
        assert values["best_val_loss"] == pytest.approx(metrics["best_val_loss"], rel=1e-6)
