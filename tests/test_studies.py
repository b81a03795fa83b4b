"""The two studies on tiny data: what they measure, that they agree with evaluation, and that a
second run computes nothing (every point comes from the cache)."""

import numpy as np
import pytest
from conftest import mirrored

from autoenc import evaluate
from autoenc import train as train_lib
from autoenc.plots import save_png
from autoenc.studies import baselines
from autoenc.studies import compression as compression_study
from autoenc.studies import denoising as denoising_study
from autoenc.studies import figures as study_plots
from autoenc.studies import points as study_points

ONE_EPOCH = {"epochs": "1", "image_every_epochs": "0", "loss_every_steps": "0"}
# The denoiser's tiny run: one epoch of 256 images (2 steps), no image or loss summaries.
TINY_DENOISER = {"train_examples": "256", "image_every_epochs": "0", "loss_every_steps": "0"}
LEVELS = (0.3, 0.6)


def _forbid(monkeypatch, module, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} ran, but every point was cached")

    monkeypatch.setattr(module, name, fail)


def test_cached_point_computes_once_and_survives_a_new_process(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"psnr": 12.5}

    cache = study_points.PointCache(tmp_path / "points.json")
    first = study_points.cached_point(cache, "a", compute, log=lambda line: None)
    reopened = study_points.PointCache(tmp_path / "points.json")  # as a rerun would
    again = study_points.cached_point(reopened, "a", compute, log=lambda line: None)
    assert calls == [1]
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["psnr"] == 12.5 and again["seconds"] == first["seconds"] >= 0


def test_score_images_matches_a_direct_psnr():
    clean = np.random.default_rng(0).random((2500, 28, 28, 1)).astype(np.float32)
    outputs = np.clip(clean + 0.1, 0, 1)
    scores = study_points.score_images(clean, outputs, batch_size=1000)  # a partial last batch
    assert scores["psnr"] == pytest.approx(baselines.mean_psnr(clean, outputs), abs=1e-3)
    assert study_points.score_images(clean, clean)["ssim"] == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def compression_root(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("compression")
    rows = compression_study.run(
        root,
        (4, 784),
        data=tiny_data,
        overrides=ONE_EPOCH,
        log=lambda line: None,
        make_strategy=lambda: mirrored(1),
    )
    return root, rows


def test_compression_study_measures_both_models_per_width(compression_root, tiny_data):
    root, rows = compression_root
    assert [(row["dim"], row["ratio"]) for row in rows] == [(4, 196.0), (784, 1.0)]
    assert (root / "dim4" / "metrics.json").exists() and (root / "dim784" / "best").is_dir()
    # PCA at full width reconstructs the test images exactly: the 100 dB floor.
    assert rows[1]["pca"]["psnr"] == pytest.approx(100.0, abs=0.5)
    assert rows[0]["pca"]["psnr"] < 30 and rows[0]["autoencoder"]["epochs"] == 1
    assert 0 < rows[0]["autoencoder"]["epoch_seconds"] <= rows[0]["autoencoder"]["seconds"]
    table = compression_study.markdown_table(rows)
    assert "| 4 | 196.0x |" in table and "PCA wins" in table  # 1 epoch loses to an exact PCA


def test_compression_study_rerun_computes_nothing(compression_root, tiny_data, monkeypatch):
    root, rows = compression_root
    _forbid(monkeypatch, train_lib, "train_and_evaluate")
    _forbid(monkeypatch, baselines, "fit_pca")
    again = compression_study.run(
        root, (4, 784), data=tiny_data, overrides=ONE_EPOCH, log=lambda line: None
    )
    assert all(row[key]["cached"] for row in again for key in ("autoencoder", "pca"))
    assert [row["pca"]["psnr"] for row in again] == [row["pca"]["psnr"] for row in rows]


def test_verdict_names_the_winner():
    ae = {"psnr": 18.0, "ssim": 0.6}
    assert compression_study.verdict(ae, {"psnr": 17.0, "ssim": 0.5}).startswith("AE wins")
    assert compression_study.verdict(ae, {"psnr": 19.0, "ssim": 0.7}).startswith("PCA wins")
    assert compression_study.verdict(ae, {"psnr": 19.0, "ssim": 0.5}).startswith("split")


@pytest.fixture(scope="module")
def denoising_run(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("denoising")
    result = denoising_study.run(
        root,
        LEVELS,
        epochs=1,
        tuning_images=16,
        data=tiny_data,
        overrides=TINY_DENOISER,
        log=lambda line: None,
        make_strategy=lambda: mirrored(1),
    )
    return root, result


def test_denoising_study_scores_every_method_on_the_evaluation_noise(denoising_run, tiny_data):
    root, result = denoising_run
    assert result["training"]["epochs"] == 1 and result["test_images"] == len(tiny_data.x_test)
    assert 0 < result["training"]["epoch_seconds"] <= result["training"]["seconds"]
    config = denoising_study.denoiser_config(1, overrides=TINY_DENOISER)
    for row, level in zip(result["rows"], LEVELS):
        # The noisy images the classical methods saw are those --mode=eval scores.
        evaluated = evaluate.evaluate_workdir(
            config, root / "conv_denoise", noise_factor=level, data=tiny_data
        )
        assert row["noisy input"]["psnr"] == pytest.approx(
            evaluated["noisy_input"]["psnr"], abs=1e-4
        )
        assert row["autoencoder"]["psnr"] == pytest.approx(evaluated["test"]["psnr"], abs=1e-4)
        for name, denoiser in baselines.DENOISERS.items():
            assert row[name]["value"] in denoiser.grid
            assert row[name]["psnr"] > row["noisy input"]["psnr"], (name, level)
    noisier = [result["rows"][1][name]["psnr"] for name in baselines.DENOISERS]
    cleaner = [result["rows"][0][name]["psnr"] for name in baselines.DENOISERS]
    assert all(hi > lo for hi, lo in zip(cleaner, noisier))


def test_denoising_study_rerun_computes_nothing(denoising_run, tiny_data, monkeypatch):
    root, result = denoising_run
    _forbid(monkeypatch, train_lib, "train_and_evaluate")
    _forbid(monkeypatch, evaluate, "evaluate_workdir")
    _forbid(monkeypatch, baselines, "tune")
    again = denoising_study.run(
        root,
        LEVELS,
        epochs=1,
        tuning_images=16,
        data=tiny_data,
        overrides=TINY_DENOISER,
        log=lambda line: None,
    )
    labels = ("noisy input", "autoencoder", *baselines.DENOISERS)
    assert all(row[label]["cached"] for row in again["rows"] for label in labels)
    assert again["rows"][1]["tv"]["psnr"] == result["rows"][1]["tv"]["psnr"]


def test_tables_and_figures_from_a_study(denoising_run, compression_root, tmp_path):
    _, result = denoising_run
    text = denoising_study.markdown_tables(result)
    psnr_rows = [line for line in text.splitlines() if line.startswith("| 0.3 |")]
    best = max(baselines.DENOISERS, key=lambda name: result["rows"][0][name]["psnr"])
    assert f"**{result['rows'][0][best]['psnr']:.2f}**" in psnr_rows[0]
    assert psnr_rows[0].count("**") == 2  # only the best classical method is bold
    margin = result["rows"][0]["autoencoder"]["psnr"] - result["rows"][0][best]["psnr"]
    assert psnr_rows[0].endswith(f"| {margin:+.2f} |")
    levels = [row["level"] for row in result["rows"]]
    curves = {"noisy input": [row["noisy input"] for row in result["rows"]]}
    save_png(study_plots.denoising_figure(levels, curves), tmp_path / "denoising.png")
    save_png(study_plots.compression_figure(compression_root[1]), tmp_path / "compression.png")
    for name in ("denoising.png", "compression.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_a_test_subset_scores_every_method_on_the_same_first_images(denoising_run, tiny_data):
    root, _ = denoising_run
    subset = denoising_study.run(
        root,
        (0.6,),
        epochs=1,
        methods=("median",),
        test_images=128,
        tuning_images=16,
        data=tiny_data,
        overrides=TINY_DENOISER,
        log=lambda line: None,
    )
    assert subset["test_images"] == 128 and not subset["rows"][0]["autoencoder"]["cached"]
    # The first 128 test images form the first evaluation batch, so their noise is the same as
    # in an evaluation of the whole set, and evaluating just them must give the same scores.
    first_images = tiny_data._replace(x_test=tiny_data.x_test[:128])
    config = denoising_study.denoiser_config(1, overrides=TINY_DENOISER)
    evaluated = evaluate.evaluate_workdir(
        config, root / "conv_denoise", noise_factor=0.6, data=first_images
    )
    row = subset["rows"][0]
    assert row["autoencoder"]["psnr"] == pytest.approx(evaluated["test"]["psnr"], abs=1e-3)
    assert row["noisy input"]["psnr"] == pytest.approx(evaluated["noisy_input"]["psnr"], abs=1e-4)
