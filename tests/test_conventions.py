import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import conventions, models

MEAN, STD = (0.1307,), (0.3081,)


@pytest.mark.parametrize("convention, pixel_0, pixel_1", [
    ("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0), ("byte", 0.0, 255.0)])
def test_maps_normalised_black_and_white_to_the_conventions_range(convention, pixel_0, pixel_1):
    scale, offset = conventions.to_teacher_input(convention, MEAN, STD)
    black, white = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]  # normalised pixels 0 and 1
    assert scale * black + offset == pytest.approx(pixel_0, abs=1e-4)
    assert scale * white + offset == pytest.approx(pixel_1, abs=1e-3)


@pytest.mark.parametrize("convention, pixel_0, pixel_1", [
    ("normalized", -MEAN[0] / STD[0], (1 - MEAN[0]) / STD[0]), ("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0),
    ("byte", 0.0, 255.0)])
def test_a_tanh_read_as_pixels_maps_minus_one_and_one_to_black_and_white(convention, pixel_0, pixel_1):
    scale, offset = conventions.from_tanh_pixels(conventions.to_teacher_input(convention, MEAN, STD), MEAN, STD)
    np.testing.assert_allclose(scale * np.array([-1.0, 0.0, 1.0]) + offset,
                               [pixel_0, (pixel_0 + pixel_1) / 2, pixel_1], rtol=1e-5, atol=1e-5)


def test_mean_std_and_normalized_conventions():
    assert conventions.to_teacher_input("normalized", MEAN, STD) == (1.0, 0.0)
    # A teacher normalised with ImageNet statistics, fed images normalised with the dataset's.
    scale, offset = conventions.to_teacher_input("mean_std", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                                                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixel = 0.7  # in [0, 1]
    normalised = (pixel - 0.5) / 0.25
    np.testing.assert_allclose(scale * normalised + offset, (pixel - np.array([0.485, 0.456, 0.406])) /
                               np.array([0.229, 0.224, 0.225]), rtol=1e-5)
    with pytest.raises(ValueError, match="needs the teacher's per-channel mean and std"):
        conventions.to_teacher_input("mean_std", MEAN, STD)
    with pytest.raises(ValueError, match="unknown input convention 'hsv'"):
        conventions.to_teacher_input("hsv", MEAN, STD)


def test_adapted_generator_rescales_and_passes_gradients(tmp_path):
    generator = models.build_generator("generator_a", 8, (32, 32, 1), width=4)
    assert conventions.adapt_generator(generator, 1.0, 0.0) is generator
    scale, offset = conventions.to_teacher_input("byte", MEAN, STD)
    adapted = conventions.adapt_generator(generator, scale, offset)
    z = tf.constant(np.random.default_rng(0).standard_normal((4, 8)).astype("float32"))
    np.testing.assert_allclose(adapted(z, training=False), generator(z, training=False) * scale + offset, rtol=1e-4,
                               atol=1e-3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(adapted(z, training=True))
    assert all(g is not None for g in tape.gradient(loss, adapted.trainable_variables))
    adapted.save(tmp_path / "generator.keras")
    reloaded = keras.saving.load_model(tmp_path / "generator.keras")
    np.testing.assert_allclose(reloaded(z), adapted(z), rtol=1e-4, atol=1e-3)
    clipped = conventions.adapt_generator(generator, scale, offset, clip_to=(0.0, 255.0))
    clipped.save(tmp_path / "clipped.keras")
    # A run's generator.keras, loaded by a user's program that imports nothing but dfad_tf.
    loaded = subprocess.run([sys.executable, "-c", "import dfad_tf, keras, sys; "
                             "print(keras.saving.load_model(sys.argv[1]).output_shape)", tmp_path / "clipped.keras"],
                            capture_output=True, text=True, timeout=120)
    assert loaded.stdout.strip().endswith("(None, 32, 32, 1)"), loaded.stderr[-1000:]
    np.testing.assert_allclose(conventions.adapt_images(np.ones((1, 2, 2, 1)), scale, offset),
                               np.full((1, 2, 2, 1), scale + offset, "float32"))


def test_batchnorm_mismatch_is_the_gaussian_kl_at_the_first_batchnorm(unit_bn_teacher):
    images = np.random.default_rng(0).uniform(0, 1, (32, 32, 32, 1)).astype("float32")
    layer = unit_bn_teacher.layers[2]
    inputs = np.asarray(keras.Model(unit_bn_teacher.inputs, layer.input)(images))
    mean, variance = inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2))
    moving_mean, moving_variance = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance) + layer.epsilon
    variance = variance + layer.epsilon  # as the layer normalises
    kl = 0.5 * (variance / moving_variance + (mean - moving_mean) ** 2 / moving_variance - 1
                - np.log(variance / moving_variance))
    assert conventions.batchnorm_mismatch(unit_bn_teacher, images) == pytest.approx(kl.mean(), rel=1e-3)
    lenet = models.build_classifier("lenet5", (32, 32, 1), 10)  # no BatchNorm: nothing to compare with
    assert conventions.batchnorm_mismatch(lenet, images) is None


@pytest.mark.parametrize("trained_on", ["unit", "byte"])
def test_a_wrong_range_flag_is_caught_and_the_right_one_is_not(trained_on, unit_bn_teacher, conv_bn_teacher):
    teacher = unit_bn_teacher if trained_on == "unit" else conv_bn_teacher("byte")
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    normalised = generator(np.random.default_rng(0).standard_normal((64, 16)).astype("float32"), training=True)
    suggestions = {}
    for flag in ("normalized", "unit", "symmetric", "byte"):
        input_map = conventions.to_teacher_input(flag, MEAN, STD)
        check = conventions.check_input_convention(teacher, conventions.adapt_images(normalised, *input_map), flag,
                                                   input_map, MEAN, STD)
        suggestions[flag] = check.suggestion
    assert suggestions.pop(trained_on) is None
    assert set(suggestions.values()) == {trained_on}
