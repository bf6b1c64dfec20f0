"""BatchNorm layers read from a SavedModel graph: the BatchNorm prior and convention check for SavedModel teachers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import conventions, losses, model_files, models, objectives, profile, savedmodel_batchnorm


def conv_bn(scale=True, center=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=scale, center=center, epsilon=0.01)(x)
    x = keras.layers.Conv2D(6, 3, strides=2)(keras.layers.ReLU()(x))
    x = keras.layers.BatchNormalization(scale=scale, center=center)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # running statistics and affine terms that are not 0 and 1
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32") for w in layer.get_weights()])
    return model


def images(count=8, shape=(16, 16, 1)):
    return np.random.default_rng(1).uniform(size=(count, *shape)).astype("float32")


@pytest.mark.parametrize("scale, center", [(True, True), (False, True), (True, False)])
def test_keras_batchnorm_layers_are_found_in_its_savedmodel(tmp_path, scale, center):
    keras_teacher = conv_bn(scale, center)
    keras_teacher.export(tmp_path / "saved", verbose=False)
    saved_teacher = model_files.load_model(str(tmp_path / "saved"))
    layers, probe = objectives.batchnorm_probe(saved_teacher)
    keras_layers, keras_probe = objectives.batchnorm_probe(keras_teacher)
    assert len(layers) == len(keras_layers) == 2
    for found, layer in zip(layers, keras_layers):
        np.testing.assert_array_equal(found.moving_mean, layer.moving_mean)
        np.testing.assert_array_equal(found.moving_variance, layer.moving_variance)
        assert found.epsilon == pytest.approx(layer.epsilon)
    for found, expected in zip(probe(images()), keras_probe(images())):  # the outputs, then each layer's inputs
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    assert profile.batchnorm_layers(saved_teacher) == 2  # what dfad-inspect reports


def test_the_batchnorm_prior_on_a_savedmodel_is_the_keras_teachers(tmp_path):
    keras_teacher = conv_bn()
    keras_teacher.export(tmp_path / "saved", verbose=False)
    saved_teacher = model_files.load_model(str(tmp_path / "saved"))
    student = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    batch = tf.constant(images())

    def loss_and_gradient(teacher):
        objective = objectives.GeneratorObjective(teacher, losses.get("mae"), {"adversarial": 1, "batchnorm": 1})
        with tf.GradientTape() as tape:
            tape.watch(batch)
            loss = objective(batch, student)
        return float(loss), tape.gradient(loss, batch).numpy()

    saved_loss, saved_gradient = loss_and_gradient(saved_teacher)
    keras_loss, keras_gradient = loss_and_gradient(keras_teacher)
    assert saved_loss == pytest.approx(keras_loss, rel=1e-5) and saved_loss > 1.0  # far from the running statistics
    assert np.abs(keras_gradient).max() > 0
    np.testing.assert_allclose(saved_gradient, keras_gradient, rtol=1e-4, atol=1e-6)
    # and so the input convention check reads a SavedModel teacher's first BatchNorm layer too
    assert conventions.batchnorm_mismatch(saved_teacher, images()) == pytest.approx(
        conventions.batchnorm_mismatch(keras_teacher, images()), rel=1e-5)


class FusedBatchNormModel(tf.Module):
    """A TF1-style graph: one convolution, then a fused BatchNorm op in inference mode."""

    def __init__(self):
        rng = np.random.default_rng(2)
        self.kernel = tf.Variable(rng.standard_normal((3, 3, 1, 4)).astype("float32"))
        self.statistics = [tf.Variable(rng.uniform(0.5, 2.0, 4).astype("float32")) for _ in range(4)]
        self.dense = tf.Variable(rng.standard_normal((4, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 1), tf.float32)])
    def __call__(self, images):
        features = tf.nn.conv2d(images, self.kernel, 1, "SAME")
        scale, offset, mean, variance = self.statistics
        normalised, *_ = tf.compat.v1.nn.fused_batch_norm(features, scale, offset, mean, variance, epsilon=0.002,
                                                          is_training=False)
        return {"logits": tf.reduce_mean(normalised, axis=[1, 2]) @ self.dense}


def test_a_fused_batchnorm_op_is_read_too(tmp_path):
    module = FusedBatchNormModel()
    tf.saved_model.save(module, str(tmp_path / "fused"), signatures=module.__call__)
    layers, probe = objectives.batchnorm_probe(model_files.load_model(str(tmp_path / "fused")))
    (layer,) = layers
    np.testing.assert_array_equal(layer.moving_mean, module.statistics[2].numpy())
    np.testing.assert_array_equal(layer.moving_variance, module.statistics[3].numpy())
    assert layer.epsilon == pytest.approx(0.002)
    outputs, inputs = probe(images())
    np.testing.assert_allclose(outputs, module(images())["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inputs, tf.nn.conv2d(images(), module.kernel, 1, "SAME"), rtol=1e-5, atol=1e-5)


def test_a_savedmodel_without_batchnorm_has_no_prior(tmp_path):
    models.build_classifier("lenet5", (32, 32, 1), 10).export(tmp_path / "lenet", verbose=False)
    teacher = model_files.load_model(str(tmp_path / "lenet"))
    assert objectives.batchnorm_probe(teacher) == ([], None)
    (saved,) = [layer for layer in teacher.layers if isinstance(layer, keras.layers.TFSMLayer)]
    assert savedmodel_batchnorm.read_batchnorms(saved.call_endpoint_fn) == ([], None)
    with pytest.raises(ValueError, match="BatchNormalization layers that can be read"):
        objectives.GeneratorObjective(teacher, losses.get("mae"), objectives.METHOD_WEIGHTS["dfad_bn"])
