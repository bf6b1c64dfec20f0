import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import fileio

gfile = tf.io.gfile


@pytest.fixture(params=["local", "ram"])
def folder(request, tmp_path):
    """A fresh folder on the local disk, or on TensorFlow's in-memory ram:// filesystem (as gs:// would be)."""
    if request.param == "local":
        yield str(tmp_path)
        return
    path = f"ram://fileio_{request.node.name.replace('[', '_').rstrip(']')}"
    yield path
    fileio.remove_tree(path)


def read(path):
    with gfile.GFile(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_atomic_path_replaces_only_on_success(folder):
    target = f"{folder}/model.keras"
    with fileio.atomic_path(target) as tmp:
        assert tmp.endswith("/model.keras")
        write(tmp, "old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            write(tmp, "half")
            raise RuntimeError("killed while writing")
    assert read(target) == "old"
    assert gfile.listdir(folder) == ["model.keras"]
    with fileio.atomic_path(target) as tmp:
        write(tmp, "new")
    assert read(target) == "new"
    assert gfile.listdir(folder) == ["model.keras"]


def test_atomic_directory_keeps_the_old_directory_on_failure(folder):
    target = f"{folder}/savedmodel"
    with fileio.atomic_directory(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        write(os.path.join(tmp, "saved_model.pb"), "old")
        write(os.path.join(tmp, "variables", "data"), "old weights")
    with pytest.raises(RuntimeError):
        with fileio.atomic_directory(target) as tmp:
            os.makedirs(tmp)
            raise RuntimeError("conversion failed")
    assert read(f"{target}/saved_model.pb") == "old"
    with fileio.atomic_directory(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        write(os.path.join(tmp, "saved_model.pb"), "new")
        write(os.path.join(tmp, "variables", "data"), "new weights")
    assert read(f"{target}/saved_model.pb") == "new" and read(f"{target}/variables/data") == "new weights"
    assert gfile.listdir(folder) == ["savedmodel"]


def test_json_round_trip(folder):
    path = f"{folder}/run/metrics.json"
    assert fileio.read_json(path, default={}) == {}
    fileio.write_json(path, {"student_accuracy": 0.9})
    assert fileio.read_json(path) == {"student_accuracy": 0.9}
    assert fileio.is_file(path) and not fileio.is_file(f"{folder}/run")


def test_a_keras_model_round_trips(folder):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with fileio.atomic_path(f"{folder}/student.keras") as tmp:
        model.save(tmp)
    loaded = keras.saving.load_model(f"{folder}/student.keras")
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_a_bucket_path_never_becomes_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tf.errors.OpError):  # no such filesystem or bucket here: an error, not ./gs:/...
        fileio.write_json("gs://no-such-bucket-dfad/run/metrics.json", {})
    assert os.listdir(tmp_path) == []
