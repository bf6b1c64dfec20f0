import os

import numpy as np
import pytest

from dfad_tf import export, models, qat


@pytest.mark.parametrize("name, input_shape", [("lenet5_half", (32, 32, 1)), ("resnet18_8x", (32, 32, 3))])
def test_tf_keras_twin_is_the_same_network(name, input_shape):
    student = models.build_classifier(name, input_shape, 10)
    images = np.random.default_rng(0).standard_normal((4, *input_shape)).astype("float32")
    twin = qat.tf_keras_twin(student)
    assert type(twin).__module__.startswith("tf_keras")
    np.testing.assert_allclose(twin(images, training=False), student(images, training=False), atol=1e-5)


def test_unregistered_students_are_refused():
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    student.name = "my_own_net"
    with pytest.raises(ValueError, match="needs a registered architecture.*'my_own_net'"):
        qat.tf_keras_twin(student)


def test_quantization_aware_finetune_inserts_fake_quant_trains_and_converts(tmp_path, digits_teacher, digits_arrays):
    import keras

    images, _ = digits_arrays
    teacher = keras.saving.load_model(digits_teacher)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    generator_before = [np.array(v) for v in generator.trainable_variables]
    quantized = qat.quantization_aware_finetune(teacher, student, generator, iterations=3, batch_size=16,
                                                imitation_steps=2, student_lr=0.01)
    assert "TF_USE_LEGACY_KERAS" not in os.environ  # the tfmot import did not switch Keras for everyone
    assert len(qat.fake_quant_layers(quantized)) >= 5  # 3 convolutions and 2 dense layers at least
    twin_outputs = qat.tf_keras_twin(student)(images[:16], training=False)
    assert not np.allclose(quantized(images[:16], training=False), twin_outputs, atol=1e-3)  # it trained
    assert any(not np.array_equal(b, np.array(v)) for b, v in zip(generator_before, generator.trainable_variables))
    path = tmp_path / "student_qat_int8.tflite"
    qat.export_qat_tflite(quantized, path)
    outputs = export.tflite_predict(path, images)
    np.testing.assert_allclose(outputs, quantized(images, training=False), atol=0.5)
    assert os.listdir(tmp_path) == ["student_qat_int8.tflite"]
