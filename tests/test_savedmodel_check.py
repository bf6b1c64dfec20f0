"""SavedModels are checked before they are loaded: only tensor computation runs without a flag."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import export, model_files, models, savedmodel_check
from dfad_tf.cli import distill, evaluate, inspect as inspect_binary

from conftest import TINY, one_line_error, real_program, run_binary

IMAGE = tf.TensorSpec([None, 32, 32, 1], tf.float32)


class DigitsModule(tf.Module):
    """A linear digits classifier whose serving function also writes `target`, in one of three ways."""

    def __init__(self, target, where):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([32 * 32, 10], seed=[0, 0]))
        self.target, self.where = target, where

    @tf.function
    def write(self):
        tf.io.write_file(self.target, "written by a teacher")

    @tf.function(input_signature=[IMAGE])
    def serve(self, images):
        logits = tf.matmul(tf.reshape(images, [-1, 32 * 32]), self.kernel)
        if self.where == "serving function":
            tf.io.write_file(self.target, "written by a teacher")
        elif self.where == "nested function":
            self.write()
        else:  # a tf.cond branch taken on every batch
            logits = tf.cond(tf.shape(images)[0] > 0, lambda: self._written(logits), lambda: logits)
        return {"output_0": logits}

    def _written(self, logits):
        with tf.control_dependencies([tf.io.write_file(self.target, "written by a teacher")]):
            return tf.identity(logits)


@pytest.fixture(params=["serving function", "nested function", "cond branch"])
def writing_model(request, tmp_path):
    """(SavedModel directory, the file its serving function writes)."""
    target = tmp_path / "written.txt"
    module = DigitsModule(str(target), request.param)
    tf.saved_model.save(module, str(tmp_path / "writer"), signatures={"serving_default": module.serve})
    return tmp_path / "writer", target


def test_a_model_that_writes_a_file_is_refused_and_writes_nothing(writing_model, capsys):
    path, target = writing_model
    assert savedmodel_check.unsafe_operations(path) == ["WriteFile"]
    assert run_binary(evaluate, f"--model={path}", "--dataset=digits") == 2
    assert one_line_error(capsys).split(": error: ")[1] == (
        f"--model: {path}: serving_default could run operations other than tensor computation (WriteFile), which "
        "can act on this machine (files, printing, Python callbacks); pass --allow_unsafe_model if you trust it")
    for binary, model_dir in ((inspect_binary, []), (distill, [f"--model_dir={path.parent / 'run'}", *TINY])):
        assert run_binary(binary, f"--teacher={path}", *model_dir) == 2
        line = one_line_error(capsys)
        assert line.split(": error: ")[1].startswith(f"--teacher: {path}: serving_default could run operations "
                                                     "other than tensor computation (WriteFile)")
        assert line.endswith("; pass --allow_unsafe_teacher if you trust it")
    assert not target.exists()
    # What the check prevents: evaluating the same model with the check off writes the file.
    assert run_binary(evaluate, f"--model={path}", "--dataset=digits", "--allow_unsafe_model") == 0
    assert target.read_text() == "written by a teacher"


def test_models_exported_by_dfad_tf_and_by_keras_are_accepted(tmp_path):
    model = models.build_classifier("lenet5", (32, 32, 3), 10)
    export.export_saved_model(model, tmp_path / "dfad_tf")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="gelu")(inputs)
    x = keras.layers.LayerNormalization()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalMaxPooling2D()(x))
    keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x)).export(tmp_path / "keras")
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for name in ("dfad_tf", "keras"):
        operations = savedmodel_check.reachable_operations(tmp_path / name)
        assert "Conv2D" in operations and "RestoreV2" not in operations and "SaveV2" not in operations
        assert savedmodel_check.unsafe_operations(tmp_path / name) == []
    np.testing.assert_allclose(model_files.load_model(tmp_path / "dfad_tf")(images), model(images), atol=1e-5)


@tf.custom_gradient
def identity_writing_its_gradient(x):
    def gradient(upstream):
        with tf.control_dependencies([tf.io.write_file("gradient.txt", "written by a gradient")]):
            return tf.identity(upstream)
    return tf.identity(x), gradient


@pytest.mark.parametrize("body, expected", [
    (lambda x: tf.while_loop(lambda i, y: i < 2, lambda i, y: (i + 1, y * 2.0), [0, x])[1], []),
    (lambda x: tf.while_loop(lambda i, y: i < 2, lambda i, y: (i + 1, y + tf.cast(
        tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)), [0, x])[1], ["ReadFile", "StringLength"]),
    (lambda x: (tf.print(x, output_stream="file:///tmp/printed.txt"), x)[1], ["PrintV2", "StringFormat"]),
    (lambda x: tf.py_function(lambda t: t, [x], tf.float32), ["EagerPyFunc"]),
    (identity_writing_its_gradient, ["WriteFile"]),
], ids=["while-loop", "read-in-loop-body", "print-to-file", "python-callback", "custom-gradient"])
def test_operations_are_found_wherever_they_are(tmp_path, body, expected):
    module = tf.Module()
    module.serve = tf.function(lambda x: {"y": body(x)}, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    assert savedmodel_check.unsafe_operations(tmp_path) == expected


def test_the_allow_flags_load_it(tmp_path, monkeypatch, capsys):
    target = tmp_path / "written.txt"
    module = DigitsModule(str(target), "serving function")
    tf.saved_model.save(module, str(tmp_path / "writer"), signatures={"serving_default": module.serve})
    result = real_program("evaluate", f"--model={tmp_path / 'writer'}", "--dataset=digits", "--allow_unsafe_model")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["examples"] > 0 and target.exists()
    monkeypatch.setattr(models, "CLASSIFIERS", {"lenet5_half": models.CLASSIFIERS["lenet5_half"]})  # one student
    assert run_binary(inspect_binary, f"--teacher={tmp_path / 'writer'}", "--json", "--allow_unsafe_teacher") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["teacher"]["output_shape"] == [10]


def test_unreadable_and_tensorflow_1_savedmodels(tmp_path):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(model_files.ModelFileError, match="cannot be parsed") as error:
        model_files.load_model(tmp_path / "corrupt")
    assert not error.value.unsafe
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        images = tf.compat.v1.placeholder(tf.float32, [None, 4])
        tf.compat.v1.saved_model.simple_save(session, str(tmp_path / "v1"), {"images": images},
                                             {"logits": images * 2.0})
    with pytest.raises(model_files.ModelFileError, match="TensorFlow 1") as error:
        model_files.load_model(tmp_path / "v1")
    assert error.value.unsafe
