import keras
import numpy as np
import pytest

from dfad_tf import models


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize("name, input_shape, expected", [
    # Hand counts (weights + biases) for 10 classes; the ResNets match PyTorch's reference models.
    ("lenet5", (32, 32, 1), 156 + 2416 + 48120 + 10164 + 850),
    ("lenet5_half", (32, 32, 1), 78 + 608 + 12060 + 2562 + 430),
    ("resnet18_8x", (32, 32, 3), 11_173_962),
    ("resnet34_8x", (32, 32, 3), 21_282_122),
])
def test_classifier_parameter_counts_and_shapes(name, input_shape, expected):
    model = models.build_classifier(name, input_shape, 10)
    assert trainable_count(model) == expected
    assert model.output_shape == (None, 10)
    assert model.predict(np.zeros((2, *input_shape), "float32"), verbose=0).shape == (2, 10)


@pytest.mark.parametrize("name, torchvision_count, paper_flops", [
    ("resnet18", 11_689_512, 595e6), ("resnet34", 21_797_672, 1.20e9)])
def test_imagenet_layout_resnets_match_torchvision_and_the_papers_caltech_flops(name, torchvision_count, paper_flops):
    from dfad_tf import profile

    # torchvision's resnet18/34 (1000 classes) count the same trainable weights.
    assert trainable_count(models.build_classifier(name, (128, 128, 3), 1000)) == torchvision_count
    caltech = models.build_classifier(name, (128, 128, 3), 101)
    assert caltech.get_layer("avg_pool").input.shape[1:3] == (4, 4)  # 32x downsampling
    # Table 2's Caltech101 "FLOPs" are multiply-accumulates per 128x128 image.
    assert profile.macs_per_image(caltech) == pytest.approx(paper_flops, rel=0.01)


@pytest.mark.parametrize("name", sorted(models.GENERATORS))
@pytest.mark.parametrize("image_shape", [(32, 32, 1), (32, 32, 3), (28, 30, 3), (40, 52, 2)])
def test_generators_make_any_image_size_and_channel_count(name, image_shape):
    generator = models.build_generator(name, 16, image_shape, width=4)
    assert generator.output_shape == (None, *image_shape)
    assert generator(np.zeros((3, 16), "float32")).shape == (3, *image_shape)


def test_generator_a_ends_in_tanh_and_non_affine_batchnorm():
    generator = models.build_generator("generator_a", 8, (32, 32, 1), width=64)
    *_, conv, tanh, out_bn = generator.layers
    assert tanh.get_config()["activation"] == "tanh"
    assert isinstance(out_bn, keras.layers.BatchNormalization)
    assert not out_bn.center and not out_bn.scale
    assert [layer.filters for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)] == [128, 64, 1]
    slopes = [layer.negative_slope for layer in generator.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert slopes == pytest.approx([0.2, 0.2])


@pytest.mark.parametrize("name", ["generator_a", "generator_b"])
def test_either_generator_can_end_at_its_tanh_or_standardise_each_channel(name):
    noise = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
    at_tanh = models.build_generator(name, 8, (32, 32, 2), width=4, standardize_output=False)
    assert at_tanh.layers[-1].get_config()["activation"] == "tanh"
    images = np.asarray(at_tanh(noise, training=True))
    assert np.abs(images).max() <= 1 and images.std() < 0.5  # an untrained tanh stays near 0
    standardized = models.build_generator(name, 8, (32, 32, 2), width=4, standardize_output=True)
    images = np.asarray(standardized(noise, training=True))
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1, atol=1e-2)


def test_generator_b_uses_transposed_convolutions_and_ends_in_tanh():
    generator = models.build_generator("generator_b", 8, (64, 64, 3), width=8)
    deconvs = [layer.filters for layer in generator.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert deconvs == [64, 32, 16, 8]
    assert generator.layers[-1].get_config()["activation"] == "tanh"


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="unknown classifier 'lenet7'.*lenet5"):
        models.build_classifier("lenet7", (32, 32, 1), 10)
    with pytest.raises(ValueError, match="unknown generator 'generator_c'"):
        models.build_generator("generator_c", 8, (32, 32, 1))


@pytest.mark.parametrize("name, input_shape", [("lenet5_half", (32, 32, 1)), ("resnet18_8x", (16, 16, 3))])
def test_models_reload_from_keras_files_without_custom_objects(tmp_path, name, input_shape):
    model = models.build_classifier(name, input_shape, 10)
    generator = models.build_generator("generator_a", 8, input_shape, width=4)
    images = generator(np.random.default_rng(0).standard_normal((4, 8)).astype("float32"))
    for original, inputs in ((model, images), (generator, np.ones((4, 8), "float32"))):
        path = tmp_path / f"{original.name}.keras"
        original.save(path)
        reloaded = keras.saving.load_model(path)
        np.testing.assert_allclose(reloaded(inputs), original(inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("affine", [True, False])
def test_fused_batchnorm_trains_and_infers_exactly_as_keras_batchnorm(policy, affine):
    import tensorflow as tf

    from dfad_tf.models.generators import FusedBatchNormalization

    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32"))
    weighting = tf.constant(rng.normal(size=(8, 5, 5, 6)).astype("float32"))
    # gamma, beta (when affine), moving mean, moving variance
    weights = [*(rng.normal(1.0, 0.5, 6), rng.normal(size=6))[:2 * affine], np.full(6, -0.3), np.full(6, 0.5)]
    results = []
    for layer_class in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = layer_class(momentum=0.9, epsilon=1e-5, center=affine, scale=affine, dtype=policy)
        layer.build(images.shape)
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images, training=True)
            loss = tf.reduce_sum(tf.cast(outputs, "float32") * weighting)
        gradients = tape.gradient(loss, [images, *layer.trainable_weights])
        results.append((outputs, gradients, [v.numpy() for v in layer.non_trainable_weights],
                        layer(images, training=False)))
    (keras_out, keras_grads, keras_moving, keras_infer), (fused_out, fused_grads, fused_moving, fused_infer) = results
    assert fused_out.dtype == keras_out.dtype == ("float32" if policy == "float32" else "bfloat16")
    tolerance = 1e-5 if policy == "float32" else 2e-2
    np.testing.assert_allclose(tf.cast(fused_out, "float32"), tf.cast(keras_out, "float32"), atol=tolerance)
    for fused, reference in zip(fused_grads, keras_grads):
        np.testing.assert_allclose(fused, reference, atol=tolerance * np.abs(reference).max())
    # The moving statistics move to the batch's mean and biased variance as Keras's do.
    np.testing.assert_allclose(fused_moving, keras_moving, rtol=1e-5)
    assert not np.allclose(fused_moving[0], -0.3)
    np.testing.assert_allclose(tf.cast(fused_infer, "float32"), tf.cast(keras_infer, "float32"), atol=tolerance)
    # ... in one fused kernel, not Keras's separate passes.
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(images).graph
    assert [op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")] == ["FusedBatchNormV3"]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_upsample_conv_equals_nearest_upsampling_then_a_3x3_convolution(policy):
    import tensorflow as tf

    from dfad_tf import profile
    from dfad_tf.models.generators import UpsampleConv2D

    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(2, 7, 5, 3)).astype("float32"))  # odd sizes: every border case
    weighting = tf.constant(rng.normal(size=(2, 14, 10, 4)).astype("float32"))
    weights = [rng.normal(size=(3, 3, 3, 4)).astype("float32"), rng.normal(size=4).astype("float32")]
    inputs = keras.Input((7, 5, 3))
    reference = keras.layers.Conv2D(4, 3, padding="same", dtype=policy)
    combined = UpsampleConv2D(4, dtype=policy)
    results = []
    for model in (keras.Model(inputs, reference(keras.layers.UpSampling2D(2, dtype=policy)(inputs))),
                  keras.Model(inputs, combined(inputs))):
        model.layers[-1].set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = model(images)
            loss = tf.reduce_sum(tf.cast(outputs, "float32") * weighting)
        results.append((outputs, tape.gradient(loss, [images, *model.trainable_weights])))
    (expected, expected_grads), (outputs, grads) = results
    assert outputs.dtype == expected.dtype and outputs.shape == (2, 14, 10, 4)
    tolerance = 1e-5 if policy == "float32" else 2e-2
    np.testing.assert_allclose(tf.cast(outputs, "float32"), tf.cast(expected, "float32"),
                               atol=tolerance * np.abs(expected).max())
    for gradient, reference_gradient in zip(grads, expected_grads):
        np.testing.assert_allclose(gradient, reference_gradient, atol=tolerance * np.abs(reference_gradient).max())
    # No upsampled map: one transposed convolution, counted at the 4 multiply-adds per output it runs.
    graph = tf.function(combined).get_concrete_function(images).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "Conv2DBackpropInput" in kinds and not kinds & {"Tile", "ResizeNearestNeighbor", "Conv2D"}
    assert profile.macs_per_image(keras.Model(inputs, combined(inputs))) == 14 * 10 * 4 * 3 * 4
