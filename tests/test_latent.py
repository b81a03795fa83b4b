"""The code probes and the latent-space views: k-NN and ridge accuracies on data of known
structure, the probe's comparison with PCA and the pixels, the codes of a model, and the
Projector files as the real `tensorboard` server serves them to a browser.
"""

import contextlib
import json
import urllib.parse

import numpy as np
import pytest
import tensorboard_server
from conftest import mirrored
from tensorboard_server import get, get_json
from trained_runs import copy_run, trained_run

from autoenc import latent, models, plots, probe, train
from autoenc.data import FashionMNIST
from autoenc.errors import UserError
from autoenc.studies import pca as pca_lib
from configs import conv_denoise, deep_compress, dense_compress


def clusters(count: int, width: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` points around 10 random class centres of unit scale, and their labels."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(10, width))
    labels = rng.integers(0, 10, size=count)
    return centres[labels] + spread * rng.normal(size=(count, width)), labels


def garments(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 28x28 images whose class is where a bright square sits, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    images = rng.integers(0, 40, size=(count, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 5)
        image[4 + 10 * row : 12 + 10 * row, 1 + 5 * col : 7 + 5 * col] = 220
    return images, labels


@pytest.fixture(scope="module")
def labelled_data() -> FashionMNIST:
    x_train, y_train = garments(600, seed=1)
    x_test, y_test = garments(200, seed=2)
    return FashionMNIST(x_train, y_train, x_test, y_test)


@pytest.fixture(scope="module")
def dense_nets():
    config = dense_compress.get_config()
    config.encoding_dim = 8
    return models.build(config)


@pytest.mark.parametrize("classifier", sorted(probe.CLASSIFIERS))
def test_separable_clusters_are_told_apart_and_random_labels_are_not(classifier):
    train, train_labels = clusters(3000, 16, 0.1, seed=1)
    test, test_labels = clusters(1000, 16, 0.1, seed=2)
    assert probe.accuracy(classifier, train, train_labels, test, test_labels) > 0.99
    shuffled = np.random.default_rng(3).permutation(train_labels)
    chance = probe.accuracy(classifier, train, shuffled, test, test_labels)
    assert 0.05 < chance < 0.16  # 0.1 give or take the binomial spread of 1,000 draws


def test_knn_votes_as_a_brute_force_search_does():
    train, train_labels = clusters(700, 5, 1.0, seed=4)  # overlapping: many close votes
    test, _ = clusters(1200, 5, 1.0, seed=5)  # more than one batch of KNN_BATCH
    distances = ((test[:, None, :] - train[None, :, :]) ** 2).sum(axis=-1)
    nearest = train_labels[np.argsort(distances, axis=1, kind="stable")[:, :5]]
    expected = []
    for votes in nearest:
        counts = np.bincount(votes, minlength=10)
        tied = np.flatnonzero(counts == counts.max())
        expected.append(next(label for label in votes if label in tied))  # the nearest tied
    predicted = probe.knn_predict(train, train_labels, test, k=5)
    assert np.mean(predicted == np.array(expected)) > 0.998  # float32 may swap a near tie


def test_compare_scores_a_code_beside_pca_of_its_width_and_the_pixels(labelled_data):
    basis = pca_lib.fit_pca(labelled_data.x_train)
    train_codes = basis.encode(labelled_data.x_train, 6)
    test_codes = basis.encode(labelled_data.x_test, 6)
    result = probe.compare(train_codes, test_codes, labelled_data, "ridge", pca=basis)
    assert (result["classifier"], result["width"]) == ("ridge", 6)
    assert result["code"] == result["pca"]  # the code is PCA's own
    assert result["pixels"] > 0.95  # the class is written in the pixels
    noise = np.random.default_rng(0).normal(size=(600, 6))
    unrelated = probe.compare(noise, noise[:200], labelled_data, "knn5", pca=basis)
    assert unrelated["code"] < 0.3 and unrelated["pca"] > 0.9
    wide = np.zeros((600, 785))
    assert probe.compare(wide, wide[:200], labelled_data, "ridge")["pca"] is None


def test_codes_are_the_encoders_outputs_and_a_feature_map_is_refused(dense_nets, labelled_data):
    images = labelled_data.x_test[:30]
    values = latent.codes(dense_nets, images)
    direct = dense_nets.encoder(images.reshape(30, 784).astype(np.float32) / 255)
    assert values.shape == (30, 8) and values.dtype == np.float32
    np.testing.assert_allclose(values, direct, rtol=1e-6, atol=1e-6)
    with pytest.raises(UserError, match="7x7x32 feature maps"):
        latent.codes(models.build(conv_denoise.get_config()), images)


def test_the_sprite_holds_each_thumbnail_in_reading_order():
    images = np.arange(7 * 784, dtype=np.int64).reshape(7, 28, 28).astype(np.uint8)
    mosaic = latent.sprite(images)
    assert mosaic.shape == (3 * 28, 3 * 28, 1)  # 7 thumbnails: a 3x3 grid
    np.testing.assert_array_equal(mosaic[28:56, 0:28, 0], images[3])
    np.testing.assert_array_equal(mosaic[56:84, 28:56, 0], 0)  # the unused cells stay black
    assert latent.sprite(np.zeros((10_000, 28, 28), np.uint8)).shape == (2800, 2800, 1)


def test_walks_run_from_one_reconstruction_to_the_other(dense_nets, labelled_data):
    images, labels = labelled_data.x_test, labelled_data.y_test
    pairs = latent.walk_pairs(labels)
    assert [tuple(labels[[a, b]]) for a, b in pairs] == list(latent.WALK_CLASSES)
    assert latent.walk_pairs(np.zeros(5, int)) == [(0, 4)]  # one class: first and last image
    rows = latent.walk_rows(dense_nets, images, pairs[:2])
    (left, right) = pairs[0]
    ends = np.asarray(dense_nets.autoencoder(images[[left, right]].reshape(2, 784) / 255))
    assert len(rows) == 2 and rows[0].shape == (plots.ITEMS, 28, 28)
    np.testing.assert_allclose(rows[0][0], images[left] / 255)
    np.testing.assert_allclose(rows[0][[1, -2]], ends.reshape(2, 28, 28), atol=1e-5)
    np.testing.assert_allclose(rows[0][-1], images[right] / 255)


def test_figures_are_written_at_their_sizes(dense_nets, labelled_data, tmp_path):
    paths = latent.write_figures(
        dense_nets, labelled_data.x_test, labelled_data.y_test, tmp_path / "figures"
    )
    assert [path.name for path in paths] == ["code_map.png", "code_walks.png"]
    png = paths[1].read_bytes()
    size = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert size == plots.image_rows_size(len(latent.WALK_CLASSES))
    plane, share = latent.principal_plane(np.outer(np.arange(50.0), [1.0, 2.0, 0.0]))
    assert share == pytest.approx(1.0) and plane.shape == (50, 2)


def test_a_trained_run_gets_projector_figures_and_probe(
    labelled_data, tiny_data, tmp_path_factory, tmp_path
):
    config, workdir = copy_run("dense", tiny_data, tmp_path_factory, tmp_path / "run")
    result = latent.from_workdir(config, workdir, data=labelled_data, classifier="ridge")
    assert json.loads((workdir / "probe.json").read_text()) == result
    assert (result["classifier"], result["width"]) == ("ridge", config.encoding_dim)
    assert result["pixels"] > 0.95 and 0 <= result["code"] <= 1
    assert (workdir / "projector" / "projector_config.pbtxt").is_file()
    assert (workdir / "projector" / "metadata.tsv").read_text().count("\n") == 200
    assert {"code_map.png", "code_walks.png"} <= {p.name for p in (workdir / "figures").iterdir()}


@contextlib.contextmanager
def projector(logdir, log):
    """A real `tensorboard --logdir=LOGDIR`'s server and its projector plugin's URL."""
    with tensorboard_server.running(logdir, log) as server:
        yield server, f"{server.url}/data/plugin/projector"


def test_tensorboard_projector_serves_the_codes_classes_and_sprite(
    dense_nets, labelled_data, tmp_path
):
    images, labels = labelled_data.x_test[:50], labelled_data.y_test[:50]
    directory = latent.write_projector(dense_nets, images, labels, tmp_path / "run")
    latent.write_projector(dense_nets, images, labels, tmp_path / "run")  # a rerun replaces
    assert directory == tmp_path / "run" / "projector"
    with projector(tmp_path / "run", tmp_path / "tensorboard.txt") as (server, api):
        runs = server.poll(lambda: get_json(f"{api}/runs"))
        assert runs == ["projector"]
        info = get_json(f"{api}/info?run=projector")
        [embedding] = info["embeddings"]
        assert embedding["tensorName"] == latent.TENSOR_NAME
        assert [int(size) for size in embedding["tensorShape"]] == [50, 8]
        query = urllib.parse.urlencode({"run": "projector", "name": latent.TENSOR_NAME})
        served = np.frombuffer(get(f"{api}/tensor?{query}"), np.float32).reshape(50, 8)
        np.testing.assert_array_equal(served, latent.codes(dense_nets, images))
        names = get(f"{api}/metadata?{query}").decode().splitlines()
        assert names == [latent.CLASS_NAMES[label] for label in labels]
        png = get(f"{api}/sprite_image?{query}")
        assert int.from_bytes(png[16:20], "big") == 8 * 28  # 50 thumbnails: an 8x8 grid


def test_training_a_deep_compressor_probes_its_code_and_tensorboard_shows_it(
    labelled_data, tmp_path
):
    config = deep_compress.get_config()
    config.update(dict(epochs=1, batch_size=64, image_every_epochs=0, loss_every_steps=0))
    workdir = tmp_path / "runs" / "deep"
    metrics = train.train_and_evaluate(config, workdir, data=labelled_data, strategy=mirrored(1))
    code = metrics["code"]
    assert json.loads((workdir / "metrics.json").read_text())["code"] == code
    assert (code["classifier"], code["width"]) == ("knn5", config.encoding_dim)
    assert code["pixels"] > 0.95 and 0 <= code["pca"] <= 1 and 0 <= code["code"] <= 1
    assert {"code_map.png", "code_walks.png"} <= {p.name for p in (workdir / "figures").iterdir()}
    log = tmp_path / "tensorboard.txt"
    with projector(tmp_path / "runs", log) as (server, api):  # as `tensorboard --logdir runs`
        runs = server.poll(lambda: get_json(f"{api}/runs"))
        assert runs == ["deep/projector"]
        [embedding] = get_json(f"{api}/info?run=deep/projector")["embeddings"]
        assert [int(size) for size in embedding["tensorShape"]] == [200, config.encoding_dim]
        query = urllib.parse.urlencode({"run": "deep/projector", "name": latent.TENSOR_NAME})
        names = get(f"{api}/metadata?{query}").decode().splitlines()
        assert names == [latent.CLASS_NAMES[label] for label in labelled_data.y_test]
        assert len(set(names)) == 10


def test_a_conv_run_has_no_code_probe(tiny_data, tmp_path_factory):
    metrics = trained_run("conv", tiny_data, tmp_path_factory)[2]
    assert "code" not in metrics
