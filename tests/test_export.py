import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import export, model_files, models


@pytest.fixture(scope="module")
def student():
    return models.build_classifier("lenet5_half", (32, 32, 1), 10)


def test_tflite_round_trip_matches_keras_on_real_digits(tmp_path, student, digits_arrays):
    images, _ = digits_arrays
    path = tmp_path / "student.tflite"
    export.export_tflite(student, path)
    tflite_logits = export.tflite_predict(path, images, batch_size=100)
    np.testing.assert_allclose(tflite_logits, student(images), atol=1e-4)
    assert tflite_logits.shape == (540, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.tflite"]  # no temporary left


def test_saved_model_round_trip_serves_and_passes_gradients(tmp_path, student, digits_arrays):
    images = digits_arrays[0][:8]
    path = tmp_path / "student_savedmodel"
    export.export_saved_model(student, path)
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.serve(images), student(images), atol=1e-5)
    # Loaded back as a teacher, the SavedModel gives the generation stage gradients at its input.
    reloaded = model_files.load_model(path)
    assert reloaded.input_shape == (None, 32, 32, 1) and reloaded.output_shape[-1] == 10
    inputs = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = reloaded(inputs)
    np.testing.assert_allclose(outputs, student(images), atol=1e-5)
    assert float(tf.reduce_sum(tf.abs(tape.gradient(outputs, inputs)))) > 0


def test_failed_export_leaves_the_previous_file(tmp_path, student):
    path = tmp_path / "student.tflite"
    path.write_bytes(b"previous export")

    class Broken:
        def export(self, filepath, **kwargs):
            with open(filepath, "wb") as f:
                f.write(b"half")
            raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError):
        export.export_tflite(Broken(), path)
    assert path.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.tflite"]
