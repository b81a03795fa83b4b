"""The two studies on tiny data: what they measure (the compression study also probes each
code's classes), that they agree with evaluation, that a second run computes nothing (every
point comes from the cache), their command lines, and that the training library and the
compression study need none of the studies extra.

The denoising study needs the extra (scikit-image, SciPy, PyWavelets); without it its tests are
skipped with the install command as the reason.
"""

import datetime
import functools
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, mirrored
from trained_runs import trained_run

from autoenc import checkpoints, evaluate, probe
from autoenc import train as train_lib
from autoenc.errors import UsageError
from autoenc.studies import compression, figures, learned, pca, report
from autoenc.studies import points as study_points

ONE_EPOCH = {"epochs": "1", "image_every_epochs": "0", "loss_every_steps": "0"}
# The denoiser's tiny run: one epoch of 256 images (2 steps), no image or loss summaries.
TINY_DENOISER = {"train_examples": "256", "image_every_epochs": "0", "loss_every_steps": "0"}
LEVELS = (0.3, 0.6)
DIMS = (4, 784)
# A second config to sweep, given as a path: the book's dense model trained with Adam.
OTHER_COMPRESSOR = """from configs import dense_compress


def get_config():
    config = dense_compress.get_config()
    config.optimizer = "adam"
    config.learning_rate = 0.01
    return config
"""
EXTRA = ("skimage", "scipy", "pywt")


def _forbid(monkeypatch, module, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} ran, but every point was cached")

    monkeypatch.setattr(module, name, fail)


def _python(code: str) -> subprocess.CompletedProcess:
    """`python -c CODE` from the repository root, the studies extra hidden from imports."""
    hide = f"import sys; sys.modules.update(dict.fromkeys({EXTRA!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", hide + code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


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
    mse = np.mean((clean.astype(np.float64) - outputs) ** 2, axis=(1, 2, 3))
    assert scores["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-3)
    assert study_points.score_images(clean, clean)["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_cpu_description_names_the_vector_extensions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f\n\n" * 2)
    assert report.cpu_description(cpuinfo) == "Some CPU (with AVX2, AVX-512; no AVX512-BF16, AMX)"
    assert report.cpu_description(tmp_path / "missing").startswith("unknown CPU")


def test_the_library_and_the_compression_study_import_without_the_extra():
    result = _python(
        "import autoenc.train, autoenc.modes, autoenc.evaluate, autoenc.export\n"
        "import autoenc.studies.compression\n"
        "try:\n    import autoenc.studies.classical\n"
        "except ImportError as e:\n    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "the studies need scikit-image, SciPy and PyWavelets: pip install -e '.[studies]'\n"
    )


def test_the_denoising_command_says_in_one_line_that_the_extra_is_missing():
    result = _python(
        "import runpy; runpy.run_module('autoenc.studies.denoising', run_name='__main__')"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "python -m autoenc.studies.denoising: error: the studies need scikit-image, SciPy and"
        " PyWavelets: pip install -e '.[studies]'"
    ]


def test_a_bad_config_is_one_line_before_anything_trains(tmp_path):
    command = ["-m", "autoenc.studies.compression", "--configs=dense_compress,nope"]
    result = subprocess.run(
        [sys.executable, *command, f"--workdir={tmp_path / 'study'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("python -m autoenc.studies.compression: error: unknown config 'nope'")
    assert not (tmp_path / "study").exists()
    # A config without a code width is refused the same way, through the library.
    with pytest.raises(UsageError, match="encoding_dim"):
        compression.run(tmp_path / "study", DIMS, configs=("dense_compress", "conv_denoise"))
    with pytest.raises(UsageError, match="1..784"):
        compression.run(tmp_path / "study", (0, 8))
    assert not (tmp_path / "study").exists()


@pytest.fixture(scope="module")
def sized_data(tiny_data):
    """The tiny data labelled by the tenth of the training images' blob sizes each falls in
    (a blob's size is the one thing its image says), so the probe has classes to find."""
    edges = np.quantile((tiny_data.x_train > 0).sum(axis=(1, 2)), np.linspace(0.1, 0.9, 9))

    def classes(images):
        return np.searchsorted(edges, (images > 0).sum(axis=(1, 2))).astype(np.uint8)

    return tiny_data._replace(y_train=classes(tiny_data.x_train), y_test=classes(tiny_data.x_test))


@pytest.fixture(scope="module")
def compression_root(tmp_path_factory, sized_data):
    root = tmp_path_factory.mktemp("compression")
    other = root.parent / "dense_adam.py"
    other.write_text(OTHER_COMPRESSOR)
    configs = ("dense_compress", str(other))
    rows = compression.run(
        root,
        DIMS,
        configs=configs,
        data=sized_data,
        overrides=ONE_EPOCH,
        log=lambda line: None,
        make_strategy=lambda: mirrored(1),
    )
    return root, configs, rows


def test_compression_study_measures_every_config_and_pca_per_width(compression_root):
    root, _, rows = compression_root
    assert [(row["dim"], row["ratio"]) for row in rows] == [(4, 196.0), (784, 1.0)]
    for name in ("dense_compress", "dense_adam"):
        assert (root / name / "dim4" / "metrics.json").exists()
        assert (root / name / "dim784" / "best").is_dir()
        assert rows[0]["autoencoders"][name]["epochs"] == 1
    ae = rows[0]["autoencoders"]["dense_compress"]
    assert 0 < ae["epoch_seconds"] <= ae["seconds"]
    # Two configs, two models: Adam learns faster in the one epoch.
    assert ae["psnr"] < rows[0]["autoencoders"]["dense_adam"]["psnr"]
    # PCA at full width reconstructs the test images exactly: the 100 dB floor.
    assert rows[1]["pca"]["psnr"] == pytest.approx(100.0, abs=0.5)
    assert rows[0]["pca"]["psnr"] < 30
    text = compression.report_text(rows, "heading\n")
    assert text.count("| 4 | 196.0x |") == 2 and "PCA wins" in text  # 1 epoch loses to PCA
    assert "\n### dense_compress\n" in text and "\n### dense_adam\n" in text


def test_compression_study_probes_every_code_against_the_pixels(compression_root, sized_data):
    _, _, rows = compression_root
    pixels = probe.accuracy(
        "knn5",
        probe.pixels(sized_data.x_train),
        sized_data.y_train,
        probe.pixels(sized_data.x_test),
        sized_data.y_test,
    )
    assert [row["pixels_probe"] for row in rows] == [pixels] * len(DIMS)
    assert pixels > 0.3  # three times chance: a blob's size is in its pixels
    # All 784 components only rotate the centred pixels: the same distances, the same votes.
    assert rows[1]["pca"]["probe"] == pytest.approx(pixels, abs=2 / len(sized_data.y_test))
    assert rows[0]["pca"]["probe"] != rows[1]["pca"]["probe"]
    for row in rows:
        assert all(0 <= point["probe"] <= 1 for point in row["autoencoders"].values())
    table = compression.markdown_table(rows, "dense_compress")
    ae = rows[0]["autoencoders"]["dense_compress"]
    assert f"| {ae['probe']:.3f} | {rows[0]['pca']['probe']:.3f} |" in table.splitlines()[2]
    text = compression.report_text(rows, "heading\n")
    assert f"on the raw pixels it is {pixels:.3f}." in text
    assert len(figures.compression_figure(rows).axes) == 3  # PSNR, SSIM, probe


def test_compression_study_rerun_computes_nothing(compression_root, sized_data, monkeypatch):
    root, configs, rows = compression_root
    _forbid(monkeypatch, train_lib, "train_and_evaluate")
    _forbid(monkeypatch, pca, "fit_pca")
    _forbid(monkeypatch, probe, "accuracy")
    _forbid(monkeypatch, checkpoints, "load_best_model")
    again = compression.run(
        root, DIMS, configs=configs, data=sized_data, overrides=ONE_EPOCH, log=lambda line: None
    )
    for row in again:
        assert row["pca"]["cached"] and all(p["cached"] for p in row["autoencoders"].values())
    assert [row["pca"]["psnr"] for row in again] == [row["pca"]["psnr"] for row in rows]

    def probes(rows):
        return [
            (r["pca"]["probe"], r["pixels_probe"], r["autoencoders"]["dense_adam"]["probe"])
            for r in rows
        ]

    assert probes(again) == probes(rows)


def test_compression_command_writes_where_it_is_told(compression_root, sized_data, monkeypatch):
    root, configs, _ = compression_root
    # The fixture's study, cached: the command trains nothing and only reports.
    cached_run = functools.partial(compression.run, data=sized_data, overrides=ONE_EPOCH)
    monkeypatch.setattr(compression, "run", cached_run)
    _forbid(monkeypatch, train_lib, "train_and_evaluate")
    out = root.parent / "report"
    argv = [f"--workdir={root}", f"--output_dir={out}", "--dims=4,784", f"--configs={configs[1]}"]
    compression.main(argv)
    text = (out / "compression_study.md").read_text()
    assert text.startswith("Made by `python -m autoenc.studies.compression --workdir=")
    assert f", on {datetime.date.today().isoformat()};" in text.split("\n", 1)[0]
    assert "\n### dense_adam\n" in text and "dense_compress" not in text.split("\n", 1)[1]
    assert (out / "compression_study.png").read_bytes().startswith(b"\x89PNG")
    compression.main(argv[:1] + argv[2:])  # no --output_dir: the study's workdir
    assert (root / "compression_study.md").read_text().startswith("Made by")


def test_verdict_names_the_winner():
    ae = {"psnr": 18.0, "ssim": 0.6}
    assert compression.verdict(ae, {"psnr": 17.0, "ssim": 0.5}).startswith("AE wins")
    assert compression.verdict(ae, {"psnr": 19.0, "ssim": 0.7}).startswith("PCA wins")
    assert compression.verdict(ae, {"psnr": 19.0, "ssim": 0.5}).startswith("split")


def test_a_denoiser_is_titled_with_the_noise_it_was_trained_on(tmp_path):
    book = learned.from_config("conv_denoise", tmp_path, 1)
    assert book.title() == "conv_denoise (trained at 0.5)"
    blind = learned.from_config("blind_denoise", tmp_path, 1)
    assert blind.title() == "blind_denoise (trained at 0-0.8)"  # a level drawn per image


def test_epochs_zero_trains_each_denoiser_to_its_own_recipe(tmp_path):
    names = ("conv_denoise", "unet_denoise", "blind_denoise")
    own = [learned.from_config(name, tmp_path, 0).config for name in names]
    assert [(c.model, c.epochs, c.noise_factor_max) for c in own] == [
        ("conv", 100, 0.0),
        ("unet", 50, 0.0),
        ("unet", 26, 0.8),
    ]


@pytest.fixture(scope="module")
def denoising():
    """`autoenc.studies.denoising`, or a skip naming the extra to install."""
    try:
        from autoenc.studies import denoising
    except ImportError as e:
        pytest.skip(str(e))
    return denoising


@pytest.fixture(scope="module")
def denoising_run(tmp_path_factory, tiny_data, denoising):
    root = tmp_path_factory.mktemp("denoising")
    result = denoising.run(
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


def test_denoising_study_scores_every_method_on_the_evaluation_noise(
    denoising, denoising_run, tiny_data
):
    root, result = denoising_run
    assert result["training"]["conv_denoise"]["epochs"] == 1
    assert result["test_images"] == len(tiny_data.x_test)
    assert 0 < result["training"]["conv_denoise"]["epoch_seconds"]
    config = learned.from_config("conv_denoise", root, 1, TINY_DENOISER).config
    for row, level in zip(result["rows"], LEVELS):
        # conv_denoise's seed and batch size: the noisy images --mode=eval scores.
        evaluated = evaluate.evaluate_workdir(
            config, root / "conv_denoise", noise_factor=level, data=tiny_data
        )
        assert row["noisy input"]["psnr"] == pytest.approx(
            evaluated["noisy_input"]["psnr"], abs=1e-4
        )
        ours = row["learned"]["conv_denoise"]["psnr"]
        assert ours == pytest.approx(evaluated["test"]["psnr"], abs=1e-3)
        for name, point in row["classical"].items():
            assert point["value"] in denoising.classical.DENOISERS[name].grid
            assert point["psnr"] > row["noisy input"]["psnr"], (name, level)
    cleaner, noisier = (
        [row["classical"][m]["psnr"] for m in result["methods"]] for row in result["rows"]
    )
    assert all(hi > lo for hi, lo in zip(cleaner, noisier))


def test_denoising_study_rerun_computes_nothing(denoising, denoising_run, tiny_data, monkeypatch):
    root, result = denoising_run
    _forbid(monkeypatch, train_lib, "train_and_evaluate")
    _forbid(monkeypatch, learned, "load")
    _forbid(monkeypatch, denoising.classical, "tune")
    again = denoising.run(
        root,
        LEVELS,
        epochs=1,
        tuning_images=16,
        data=tiny_data,
        overrides=TINY_DENOISER,
        log=lambda line: None,
    )
    for row in again["rows"]:
        assert row["noisy input"]["cached"] and row["learned"]["conv_denoise"]["cached"]
        assert all(point["cached"] for point in row["classical"].values())
    assert again["rows"][1]["classical"]["tv"] == {
        **result["rows"][1]["classical"]["tv"],
        "cached": True,
    }


def test_runs_trained_elsewhere_are_scored_as_evaluation_scores_them(
    denoising, tiny_data, tmp_path, tmp_path_factory
):
    # A dense model (flat inputs) and a conv one, trained by train_and_evaluate as launch.py
    # does; at noise 0 the inputs are the clean images whatever the batching of the noise.
    runs = [trained_run(kind, tiny_data, tmp_path_factory) for kind in ("dense", "conv")]
    workdirs = [str(workdir) for _, workdir, _ in runs]
    result = denoising.run(
        tmp_path,
        (0.0,),
        configs=(),
        workdirs=workdirs,
        methods=("median",),
        tuning_images=16,
        data=tiny_data,
        log=lambda line: None,
    )
    assert [d.label for d in result["learned"]] == workdirs
    for (config, workdir, _), label in zip(runs, workdirs):
        evaluated = evaluate.evaluate_workdir(config, workdir, noise_factor=0.0, data=tiny_data)
        point = result["rows"][0]["learned"][label]
        assert point["psnr"] == pytest.approx(evaluated["test"]["psnr"], abs=1e-3)
        assert point["ssim"] == pytest.approx(evaluated["test"]["ssim"], abs=1e-4)
    assert result["training"][workdirs[0]]["epochs"] == 1
    assert not any(tmp_path.glob("*/best"))  # nothing trained in the study's own workdir


def test_denoising_refuses_bad_input_before_anything_runs(denoising, tmp_path):
    with pytest.raises(UsageError, match="unknown"):
        denoising.run(tmp_path / "a", methods=("median", "bilateral"))
    with pytest.raises(UsageError, match="no config.json"):
        denoising.run(tmp_path / "b", workdirs=(str(tmp_path),))
    with pytest.raises(UsageError, match="no learned denoiser"):
        denoising.run(tmp_path / "c", configs=())
    assert not any(tmp_path.iterdir())


def test_denoising_tables_figure_and_command(denoising, denoising_run, tiny_data, monkeypatch):
    root, result = denoising_run
    text = denoising.markdown_tables(result)
    psnr_rows = [line for line in text.splitlines() if line.startswith("| 0.3 |")]
    scores = result["rows"][0]["classical"]
    best = max(scores, key=lambda name: scores[name]["psnr"])
    assert f"**{scores[best]['psnr']:.2f}**" in psnr_rows[0]
    assert psnr_rows[0].count("**") == 2  # only the best classical method is bold
    margin = result["rows"][0]["learned"]["conv_denoise"]["psnr"] - scores[best]["psnr"]
    assert psnr_rows[0].endswith(f"| {margin:+.2f} |")
    cached_run = functools.partial(denoising.run, data=tiny_data, overrides=TINY_DENOISER)
    monkeypatch.setattr(denoising, "run", cached_run)
    out = root.parent / "denoising-report"
    denoising.main(
        [
            f"--workdir={root}",
            f"--output_dir={out}",
            "--epochs=1",
            "--levels=0.3,0.6",
            "--tuning_images=16",
        ]
    )
    written = (out / "denoising_study.md").read_text()
    assert written.startswith("Made by `python -m autoenc.studies.denoising") and text in written
    assert (out / "denoising_study.png").read_bytes().startswith(b"\x89PNG")


def test_a_test_subset_scores_every_method_on_the_same_first_images(
    denoising, denoising_run, tiny_data
):
    root, _ = denoising_run
    subset = denoising.run(
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
    row = subset["rows"][0]
    assert subset["test_images"] == 128 and not row["learned"]["conv_denoise"]["cached"]
    # The first 128 test images form the first evaluation batch, so their noise is the same as
    # in an evaluation of the whole set, and evaluating just them must give the same scores.
    first_images = tiny_data._replace(x_test=tiny_data.x_test[:128])
    config = learned.from_config("conv_denoise", root, 1, TINY_DENOISER).config
    evaluated = evaluate.evaluate_workdir(
        config, root / "conv_denoise", noise_factor=0.6, data=first_images
    )
    assert row["learned"]["conv_denoise"]["psnr"] == pytest.approx(
        evaluated["test"]["psnr"], abs=1e-3
    )
    assert row["noisy input"]["psnr"] == pytest.approx(evaluated["noisy_input"]["psnr"], abs=1e-4)
