import os

import keras
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
        name = "broken"

        def export(self, filepath, **kwargs):
            with open(filepath, "wb") as f:
                f.write(b"half")
            raise RuntimeError("converter crashed")

    with pytest.raises(ValueError, match="TFLite cannot convert 'broken' to float32: converter crashed"):
        export.export_tflite(Broken(), path)
    assert path.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.tflite"]


@pytest.fixture(scope="module")
def trained(digits_teacher):
    """A trained digits classifier, so that agreement between variants means something."""
    return keras.saving.load_model(digits_teacher)


@pytest.mark.parametrize("variant, min_agreement", [
    ("float32", 0.999), ("float16", 0.999), ("dynamic_int8", 0.98), ("int8", 0.95)])
def test_every_variant_converts_and_runs_on_real_digits(tmp_path, trained, variant, min_agreement, digits_arrays):
    images, labels = digits_arrays
    path = tmp_path / export.tflite_filename(variant)
    export.export_tflite(trained, path, variant, calibration_images=images[:128])
    outputs = export.tflite_predict(path, images)
    reference = np.asarray(trained(images))
    assert outputs.shape == reference.shape
    assert np.mean(outputs.argmax(-1) == reference.argmax(-1)) >= min_agreement
    assert np.mean(outputs.argmax(-1) == labels) > 0.9


def test_export_student_writes_each_variant_with_generator_calibration(tmp_path, trained):
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    paths = export.export_student(trained, tmp_path, list(export.VARIANTS), generator=generator,
                                  calibration_images=16)
    assert {name: os.path.basename(path) for name, path in paths.items()} == {
        "float32": "student.tflite", "float16": "student_float16.tflite",
        "dynamic_int8": "student_dynamic_int8.tflite", "int8": "student_int8.tflite"}
    assert sorted(os.listdir(tmp_path)) == sorted([*map(os.path.basename, paths.values()), "student_savedmodel"])
    sizes = {name: os.path.getsize(path) for name, path in paths.items()}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]


def test_int8_models_hold_int8_weights_and_int8_io_is_int8(tmp_path, trained, digits_arrays):
    from ai_edge_litert.interpreter import Interpreter

    images, _ = digits_arrays
    float_path, int8_path = tmp_path / "f.tflite", tmp_path / "q.tflite"
    export.export_tflite(trained, float_path)
    export.export_tflite(trained, int8_path, "int8", images[:64], int8_io=True)

    def weight_dtypes(path):
        # The kernels of the 3 convolutions and 2 dense layers, e.g. "lenet5/conv1_1/convolution".
        details = Interpreter(model_path=str(path)).get_tensor_details()
        return [d["dtype"] for d in details if d["name"].endswith(("/convolution", "/MatMul")) and ";" not in d["name"]]

    assert weight_dtypes(int8_path) == [np.int8] * 5
    assert weight_dtypes(float_path) == [np.float32] * 5
    model = export.TFLiteModel(int8_path)
    assert model.input["dtype"] == np.int8 and model.output["dtype"] == np.int8
    assert os.path.getsize(int8_path) < 0.5 * os.path.getsize(float_path)
    # The float interface of TFLiteModel quantizes and dequantizes with the file's own parameters.
    agreement = np.mean(model.predict(images).argmax(-1) == np.asarray(trained(images)).argmax(-1))
    assert agreement > 0.95


def test_bad_export_requests_are_refused_without_writing(tmp_path, student):
    with pytest.raises(ValueError, match="unknown TFLite variant 'int4'"):
        export.export_student(student, tmp_path, ["int4"], saved_model=False)
    with pytest.raises(ValueError, match="needs the run's generator"):
        export.export_student(student, tmp_path, ["float32", "int8"], saved_model=False)
    assert list(tmp_path.iterdir()) == []


def test_a_model_tflite_cannot_convert_is_a_one_line_error(tmp_path):
    inputs = keras.Input((4, 4))
    outputs = keras.layers.Lambda(lambda x: tf.linalg.svd(x, compute_uv=False))(inputs)
    model = keras.Model(inputs, outputs, name="uses_svd")
    with pytest.raises(ValueError, match=r"TFLite cannot convert 'uses_svd' to float32: ") as error:
        export.export_tflite(model, tmp_path / "svd.tflite")
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def uint8_interface():
    from dfad_tf import conventions
    from dfad_tf.data import digits

    return export.ServingInterface("uint8", "probabilities",
                                   conventions.from_unit_pixels((1.0, 0.0), digits.SPEC.mean, digits.SPEC.std),
                                   digits.SPEC.mean, digits.SPEC.std, digits.SPEC.class_names)


def test_uint8_files_classify_raw_digits_as_well_as_the_float_student(tmp_path, trained, uint8_interface,
                                                                      digits_arrays):
    from dfad_tf.data import digits

    images, labels = digits_arrays
    pixels, pixel_labels = digits.pixels("test")
    np.testing.assert_array_equal(uint8_interface.file_inputs(images), pixels)  # one map, both ways
    float_accuracy = np.mean(np.asarray(trained(images)).argmax(-1) == labels)
    paths = export.export_student(trained, tmp_path, ["float32"], interface=uint8_interface)
    paths["int8"] = tmp_path / "int8.tflite"  # calibrated on real pixels: an untrained generator's would not do
    export.export_tflite(uint8_interface.wrap(trained), paths["int8"], "int8", calibration_images=pixels[:128])
    for variant, tolerance in (("float32", 0.01), ("int8", 0.02)):
        model = export.TFLiteModel(paths[variant])
        assert model.input["dtype"] == np.uint8
        probabilities = model.predict(pixels)
        np.testing.assert_allclose(probabilities.sum(-1), 1, atol=0.02)
        assert abs(np.mean(probabilities.argmax(-1) == pixel_labels) - float_accuracy) <= tolerance, variant
    served = tf.saved_model.load(str(tmp_path / "student_savedmodel")).signatures["serving_default"]
    outputs = served(images=tf.constant(pixels[:8]))
    assert list(outputs) == ["probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], export.tflite_predict(paths["float32"], pixels[:8]),
                               atol=1e-5)
    described = uint8_interface.describe(trained)
    assert described["input"]["dtype"] == "uint8" and described["input"]["range"] == [0, 255]
    assert described["output"]["classes"] == 10 and described["output"]["class_names"][3] == "3"


def test_the_example_script_classifies_raw_digit_bytes(tmp_path, trained, uint8_interface):
    import subprocess
    import sys

    from dfad_tf.data import digits

    pixels, labels = digits.pixels("test")
    export.export_student(trained, tmp_path, ["float32"], saved_model=False, interface=uint8_interface)
    np.save(tmp_path / "digits.npy", pixels[:100])
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "classify_raw_digits.py")
    result = subprocess.run([sys.executable, script, str(tmp_path / "student.tflite"), str(tmp_path / "digits.npy")],
                            capture_output=True, text=True, check=True)
    predicted = np.array([int(line) for line in result.stdout.split()])
    assert len(predicted) == 100 and np.mean(predicted == labels[:100]) > 0.9
    with open(script) as f:
        source = f.read()
    assert len(source.splitlines()) <= 20
    assert {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))} == {
        "sys", "numpy", "ai_edge_litert.interpreter"}


def test_an_interface_refuses_int8_io_with_pixel_inputs(tmp_path, student, uint8_interface):
    with pytest.raises(ValueError, match="int8_io"):
        export.export_student(student, tmp_path, ["float32"], int8_io=True, interface=uint8_interface)
    assert list(tmp_path.iterdir()) == []
