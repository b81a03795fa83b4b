"""`apply_to_files` and `image_files`: a trained model on the user's PNG, JPEG and .npy files;
large images in tiles, with the model's receptive field as their overlap."""

import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from trained_runs import trained_run

from autoenc import apply as apply_lib
from autoenc import checkpoints, image_files, models, serving
from autoenc import config as config_lib
from autoenc.errors import UsageError, UserError


def apply_all(kind, tiny_data, tmp_path_factory, inputs, output_dir):
    config, workdir, _ = trained_run(kind, tiny_data, tmp_path_factory)
    outcomes = apply_lib.apply_to_files(config, workdir, [str(p) for p in inputs], output_dir)
    return {outcome.source.name: outcome for outcome in outcomes}


def test_colour_is_grey_by_luminance_and_16_bit_png_is_read(tmp_path):
    Image.new("RGB", (3, 2), (255, 0, 0)).save(tmp_path / "red.png")
    red = image_files.read_images(tmp_path / "red.png")
    assert red.pixels.shape == (1, 2, 3) and red.pixels.dtype == np.float32
    np.testing.assert_allclose(red.pixels, 76 / 255)  # round(0.299 * 255)
    Image.fromarray(np.full((2, 2), 65535, np.uint16)).save(tmp_path / "deep.png")
    np.testing.assert_allclose(image_files.read_images(tmp_path / "deep.png").pixels, 1.0)


def test_conv_denoises_any_size_with_edge_padding(tiny_data, tmp_path_factory, tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, size=(29, 35, 3), dtype=np.uint8)  # pads to 32x36
    Image.fromarray(colour).save(tmp_path / "photo.png")
    uint8_image = tiny_data.x_test[0]
    np.save(tmp_path / "one.npy", uint8_image)
    stack = rng.uniform(size=(3, 28, 28)).astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    out = tmp_path / "out"
    outcomes = apply_all("conv", tiny_data, tmp_path_factory, [tmp_path], out)
    assert all(outcome.problem is None for outcome in outcomes.values())
    assert sorted(p.name for p in out.iterdir()) == ["one.npy", "photo.png", "stack.npy"]

    config, workdir, _ = trained_run("conv", tiny_data, tmp_path_factory)
    denoiser = serving.any_size_denoiser(checkpoints.load_best_model(config, workdir).autoencoder)
    grey = np.asarray(Image.fromarray(colour).convert("L"), np.float32) / 255
    padded = np.pad(grey, ((0, 3), (0, 1)), mode="edge")[None, :, :, None]
    expected = np.asarray(denoiser(padded))[0, :29, :35, 0]
    written = np.asarray(Image.open(out / "photo.png"), np.float32) / 255
    assert written.shape == (29, 35)
    assert np.abs(written - expected).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only

    one = np.load(out / "one.npy")
    assert one.shape == (28, 28) and one.dtype == np.float32
    expected_one = np.asarray(denoiser((uint8_image / 255).astype(np.float32)[None, ..., None]))
    np.testing.assert_allclose(one, expected_one[0, ..., 0], atol=1e-6)
    assert np.load(out / "stack.npy").shape == (3, 28, 28)


def test_bad_files_are_reported_and_the_rest_still_run(tiny_data, tmp_path_factory, tmp_path):
    Image.fromarray(tiny_data.x_test[1]).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "notes.txt").write_text("hello")
    np.save(tmp_path / "bright.npy", np.full((28, 28), 255.0))
    np.save(tmp_path / "labels.npy", np.zeros((28, 28), np.int64))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    out = tmp_path / "out"
    names = ["broken.png", "notes.txt", "big.png", "bright.npy", "labels.npy", "pickled.npy"]
    Image.fromarray(tiny_data.x_test[1]).save(tmp_path / "good.jpg")  # same result name
    inputs = [tmp_path / name for name in names]
    inputs += [tmp_path / "missing.jpg", tmp_path / "good.png", tmp_path / "good.jpg"]
    outcomes = apply_all("dense", tiny_data, tmp_path_factory, inputs, out)

    problems = {name: outcome.problem for name, outcome in outcomes.items()}
    assert "not a PNG or JPEG" in problems["broken.png"] or "decode" in problems["broken.png"]
    assert "unsupported file type '.txt'" in problems["notes.txt"]
    assert "30x30 pixels; the dense model takes exactly 28x28" in problems["big.png"]
    assert "must be in [0, 1], found 255 to 255" in problems["bright.npy"]
    assert "dtype int64" in problems["labels.npy"]
    assert "not a readable .npy" in problems["pickled.npy"]
    assert problems["missing.jpg"] == "no such file"
    assert problems["good.png"] is None
    assert "its result good.png would replace that of" in problems["good.jpg"]
    assert [p.name for p in out.iterdir()] == ["good.png"]


def test_never_overwrites_an_input(tiny_data, tmp_path_factory, tmp_path):
    Image.fromarray(tiny_data.x_test[2]).save(tmp_path / "shirt.png")
    before = (tmp_path / "shirt.png").read_bytes()
    with pytest.raises(UsageError, match="already holds shirt.png"):
        apply_all("conv", tiny_data, tmp_path_factory, [tmp_path], tmp_path)
    config, workdir, _ = trained_run("conv", tiny_data, tmp_path_factory)
    outcomes = apply_lib.apply_to_files(config, workdir, [str(tmp_path)], tmp_path, overwrite=True)
    assert "would replace the input" in next(outcomes).problem
    assert (tmp_path / "shirt.png").read_bytes() == before


def test_a_file_of_the_same_name_is_kept_unless_overwrite(tiny_data, tmp_path_factory, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(tiny_data.x_test[3]).save(inputs / "a.png")
    Image.fromarray(tiny_data.x_test[4]).save(inputs / "photo.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"the user's own photo")
    with pytest.raises(
        UsageError,
        match=f"--output_dir={out} already holds photo.png \\(the result name of {inputs}/photo.jpg"
        r"\); pass --overwrite",
    ):
        apply_all("dense", tiny_data, tmp_path_factory, [inputs], out)
    assert [p.name for p in out.iterdir()] == ["photo.png"]  # nothing written, a.png neither
    assert (out / "photo.png").read_bytes() == b"the user's own photo"

    config, workdir, _ = trained_run("dense", tiny_data, tmp_path_factory)
    outcomes = list(apply_lib.apply_to_files(config, workdir, [str(inputs)], out, overwrite=True))
    assert [outcome.problem for outcome in outcomes] == [None, None]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "photo.png"]
    assert Image.open(out / "photo.png").size == (28, 28)


def test_unusable_output_dir_fails_before_any_file(tiny_data, tmp_path_factory, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        apply_all("conv", tiny_data, tmp_path_factory, [tmp_path], tmp_path / "a-file")
    with pytest.raises(UserError, match="is not writable"):
        apply_all("conv", tiny_data, tmp_path_factory, [tmp_path], "/proc/autoenc-out")


# Tiles differ from the whole image by float rounding only (at most 1.2e-7 seen, outputs in [0, 1]).
TILING_TOLERANCE = 1e-6
# Runs a command and prints its peak RSS in KiB: that of the command alone, whatever else the
# test process ran before.
PEAK_RSS_OF_CHILD = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
)


def fresh_model(config_name):
    """A config's model with seeded random weights, and its serving functions."""
    config = config_lib.load_config(config_name)
    keras.utils.set_random_seed(0)
    nets = models.build(config)
    return nets.autoencoder, serving.ServingFunctions(nets, config.model)


def keras_layers_model():
    """Keras' own spatial layers, a skip and a dilation, in one small model."""
    image = keras.Input(shape=(None, None, 1))
    full = keras.layers.Conv2D(4, 5, padding="same", activation="relu")(image)
    half = keras.layers.MaxPooling2D(2)(full)
    half = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu")(half)
    joined = keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(half), full])
    model = keras.Model(image, keras.layers.Conv2D(1, 3, padding="same")(joined))
    return model, SimpleNamespace(reconstruct=lambda x: {"image": model(x[..., None])[..., 0]})


@pytest.mark.parametrize(
    "name, radius, alignment",
    [("conv_denoise", 13, 4), ("unet_denoise", 24, 4), ("keras_layers", 8, 2)],
)
def test_the_receptive_field_suffices_and_is_close(name, radius, alignment):
    model, functions = keras_layers_model() if name == "keras_layers" else fresh_model(name)
    assert apply_lib.receptive_field(model) == (radius, alignment)
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(1, 96, 96)).astype(np.float32)
    far = (100 * rng.uniform(size=image.shape)).astype(np.float32)  # large, so a leak shows
    block = np.s_[0, 44:48, 44:48]  # output pixels of every alignment to the poolings
    expected = functions.reconstruct(image)["image"].numpy()[block]

    def far_pixels_replaced(kept):
        mixed = far.copy()
        window = np.s_[:, 44 - kept : 48 + kept, 44 - kept : 48 + kept]
        mixed[window] = image[window]
        return functions.reconstruct(mixed)["image"].numpy()[block]

    np.testing.assert_allclose(far_pixels_replaced(radius), expected, rtol=0, atol=1e-5)
    assert np.abs(far_pixels_replaced(radius - 3) - expected).max() > 1e-3


@pytest.mark.parametrize("name", ["conv_denoise", "unet_denoise"])
def test_tiles_give_the_untiled_output(name):
    model, functions = fresh_model(name)
    tiling = apply_lib.tiling_for(model, functions.size_multiple, tile=32)
    images = np.random.default_rng(1).uniform(size=(2, 203, 157)).astype(np.float32)
    whole = functions.reconstruct(images)["image"].numpy()
    tiled = apply_lib.reconstruct(functions, images, tiling)
    assert np.abs(tiled - whole).max() <= TILING_TOLERANCE
    too_narrow = apply_lib.reconstruct(functions, images, apply_lib.Tiling(32, 4))
    assert np.abs(too_narrow - whole).max() > 1e-4


def test_tiles_follow_the_size_the_serving_function_pads_to():
    model, _ = keras_layers_model()  # one 2x2 pooling, served here padded to multiples of 4

    def reconstruct(images):
        output = model(serving.pad_edges(images, 4)[..., None])[..., 0]
        return {"image": output[:, : images.shape[1], : images.shape[2]]}

    images = np.random.default_rng(2).uniform(size=(1, 61, 47)).astype(np.float32)
    whole = reconstruct(images)["image"].numpy()
    functions = SimpleNamespace(reconstruct=reconstruct)
    tiling = apply_lib.tiling_for(model, 4, tile=12)
    assert tiling == apply_lib.Tiling(tile=12, margin=8)
    tiled = apply_lib.reconstruct(functions, images, tiling)
    assert np.abs(tiled - whole).max() <= TILING_TOLERANCE
    # Edge windows starting off the multiples of 4 would be padded unlike the whole image.
    off_the_padding = apply_lib.reconstruct(functions, images, apply_lib.tiling_for(model, tile=6))
    assert np.abs(off_the_padding - whole).max() > 1e-4


def test_a_12_megapixel_image_stays_under_2_gb(tiny_data, tmp_path_factory, tmp_path):
    _, workdir, _ = trained_run("conv", tiny_data, tmp_path_factory)
    rows, columns = np.mgrid[:3000, :4000]
    Image.fromarray(((rows + columns) % 256).astype(np.uint8)).save(tmp_path / "scan.png")
    launch = [sys.executable, str(ROOT / "launch.py"), "--mode=apply", f"--workdir={workdir}"]
    launch += [f"--inputs={tmp_path / 'scan.png'}", f"--output_dir={tmp_path / 'out'}"]
    measured = [sys.executable, "-c", PEAK_RSS_OF_CHILD, *launch]
    result = subprocess.run(measured, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "scan.png").size == (4000, 3000)
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib <= 2 * 1024 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_a_picture_beyond_pillows_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for side in (30, 40, 50):  # within the limit, within twice it (Pillow warns), beyond
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / f"{side}.png")
    assert image_files.read_images(tmp_path / "30.png").pixels.shape == (1, 30, 30)
    for side in (40, 50):
        with pytest.raises(image_files.FileProblem) as refusal:
            image_files.read_images(tmp_path / f"{side}.png")
        assert str(refusal.value) == (
            "more than the 1,000 pixels Pillow opens (PIL.Image.MAX_IMAGE_PIXELS);"
            " cut it into smaller images"
        )
