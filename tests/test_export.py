"""`export_workdir`: SavedModels that plain TensorFlow serves, equal to the model in memory."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from trained_runs import trained_run

from autoenc import checkpoints, export
from autoenc.errors import UsageError, UserError

# Runs in a fresh interpreter from a temp directory, with autoenc and configs made
# unimportable: the exports must load and run with TensorFlow alone.
LOAD_AND_RUN = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.modules["autoenc"] = sys.modules["configs"] = None  # any import of them now fails
    import numpy as np
    import tensorflow as tf
    for kind in ("dense", "conv"):
        loaded = tf.saved_model.load(f"{kind}-export")
        print(kind, sorted(loaded.signatures))
        inputs = np.load(f"{kind}-inputs.npz")
        outputs = {
            "reconstruct": loaded.signatures["reconstruct"](image=inputs["images"])["image"],
            "default": loaded.signatures["serving_default"](image=inputs["images"])["image"],
            "encode": loaded.signatures["encode"](image=inputs["images"])["code"],
            "decode": loaded.signatures["decode"](code=inputs["codes"])["image"],
        }
        if kind == "conv":
            outputs["odd_size"] = loaded.reconstruct(inputs["odd_size"])["image"]
        np.savez(f"{kind}-outputs.npz", **{k: v.numpy() for k, v in outputs.items()})
    """
)


@pytest.fixture(scope="module")
def exports(tiny_data, tmp_path_factory):
    """Both tiny runs exported, and their inputs for the fresh process, in one directory."""
    root = tmp_path_factory.mktemp("exports")
    runs = {}
    rng = np.random.default_rng(0)
    for kind in ("dense", "conv"):
        config, workdir, _ = trained_run(kind, tiny_data, tmp_path_factory)
        path = export.export_workdir(config, workdir, root / f"{kind}-export")
        nets = checkpoints.load_best_model(config, workdir)
        images = tiny_data.x_test[:5].astype(np.float32) / 255
        inputs = dict(
            images=images,
            codes=np.asarray(nets.encoder(images.reshape(5, *nets.encoder.input.shape[1:]))),
            odd_size=rng.uniform(size=(2, 30, 33)).astype(np.float32),
        )
        np.savez(root / f"{kind}-inputs.npz", **inputs)
        runs[kind] = dict(config=config, workdir=workdir, path=path, nets=nets, inputs=inputs)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in runs:
        runs[kind]["loaded"] = dict(np.load(root / f"{kind}-outputs.npz"))
        runs[kind]["stdout"] = result.stdout
    return runs


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_fresh_process_without_autoenc_reproduces_the_model(kind, exports):
    run = exports[kind]
    nets, inputs, loaded = run["nets"], run["inputs"], run["loaded"]
    assert f"{kind} ['decode', 'encode', 'reconstruct', 'serving_default']" in run["stdout"]
    images = inputs["images"]
    model_input = images.reshape(5, *nets.autoencoder.input.shape[1:])
    expected = {
        "reconstruct": np.asarray(nets.autoencoder(model_input)).reshape(5, 28, 28),
        "encode": np.asarray(nets.encoder(model_input)),
        "decode": np.asarray(nets.decoder(inputs["codes"])).reshape(5, 28, 28),
    }
    expected["default"] = expected["reconstruct"]
    for name, value in expected.items():
        assert loaded[name].shape == value.shape and loaded[name].dtype == np.float32, name
        np.testing.assert_allclose(loaded[name], value, atol=1e-6, err_msg=name)
    assert not np.allclose(loaded["reconstruct"], images, atol=0.05)  # not an identity


def test_conv_export_takes_any_size_and_keeps_it(exports):
    from autoenc import serving

    run = exports["conv"]
    odd = run["inputs"]["odd_size"]
    in_process = serving.ServingFunctions(run["nets"], "conv").reconstruct(odd)["image"]
    assert run["loaded"]["odd_size"].shape == (2, 30, 33)
    np.testing.assert_allclose(run["loaded"]["odd_size"], in_process, atol=1e-6)


def test_export_json_documents_the_signatures(exports):
    info = json.loads((exports["dense"]["path"] / export.INFO_FILE).read_text())
    assert info["model"] == "dense" and info["encoding_dim"] == 32
    assert info["signatures"]["encode"] == {
        "inputs": {"image": "float32 [N, 28, 28]"},
        "outputs": {"code": "float32 [N, 32]"},
    }
    conv = json.loads((exports["conv"]["path"] / export.INFO_FILE).read_text())
    assert conv["signatures"]["reconstruct"]["inputs"] == {"image": "float32 [N, any, any]"}
    assert conv["signatures"]["decode"]["inputs"] == {"code": "float32 [N, 7, 7, 32]"}


def test_replaces_an_export_and_leaves_nothing_beside_it(exports):
    run = exports["dense"]
    info = json.loads((run["path"] / export.INFO_FILE).read_text())
    assert info["written_by"] == export.WRITTEN_BY
    assert "saved_model.pb" in info["files"] and export.INFO_FILE in info["files"]
    old = (run["path"] / "saved_model.pb").stat().st_ino
    export.export_workdir(run["config"], run["workdir"], run["path"])
    assert (run["path"] / "saved_model.pb").stat().st_ino != old  # a new SavedModel
    assert sorted(p.name for p in run["path"].parent.iterdir() if p.name.startswith(".")) == []


def tree(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_refuses_a_saved_model_it_did_not_write(exports, tmp_path):
    run = exports["dense"]
    theirs = tmp_path / "their-model"
    shutil.copytree(run["path"], theirs)
    (theirs / export.INFO_FILE).unlink()  # a SavedModel, but not one this command wrote
    (theirs / "NOTES.md").write_text("how I trained it")
    before = tree(theirs)
    with pytest.raises(UsageError, match="holds something other than an export"):
        export.export_workdir(run["config"], run["workdir"], theirs)
    assert tree(theirs) == before


def test_refuses_an_export_with_a_file_of_the_users_beside_it(exports, tmp_path):
    run = exports["dense"]
    ours = tmp_path / "export"
    shutil.copytree(run["path"], ours)
    (ours / "variables" / "notes.txt").write_text("kept with the weights")
    before = tree(ours)
    with pytest.raises(UsageError, match="holds variables/notes.txt, which no export wrote"):
        export.export_workdir(run["config"], run["workdir"], ours)
    assert tree(ours) == before


@pytest.mark.parametrize("export_dir", [".", "..", "/", "some/.."])
def test_refuses_a_path_without_a_name(export_dir, exports, tmp_path, monkeypatch):
    run = exports["dense"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=f"--export_dir={export_dir}: name a directory"):
        export.export_workdir(run["config"], run["workdir"], export_dir)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_export(exports, monkeypatch):
    run = exports["dense"]
    before = {p: p.read_bytes() for p in run["path"].rglob("*") if p.is_file()}

    def write_half_then_fail(functions, directory, info):
        (directory / "saved_model.pb").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_saved_model", write_half_then_fail)
    with pytest.raises(UserError, match="No space left on device"):
        export.export_workdir(run["config"], run["workdir"], run["path"])
    assert {p: p.read_bytes() for p in run["path"].rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in run["path"].parent.iterdir() if p.name.startswith(".")) == []


def test_refuses_a_target_that_is_not_an_export(exports, tmp_path):
    run = exports["dense"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="holds something other than an export"):
        export.export_workdir(run["config"], run["workdir"], precious)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    with pytest.raises(UsageError, match="is a file"):
        export.export_workdir(run["config"], run["workdir"], precious / "thesis.tex")
    with pytest.raises(UserError, match="cannot write the export to /proc/autoenc-export"):
        export.export_workdir(run["config"], run["workdir"], "/proc/autoenc-export")
