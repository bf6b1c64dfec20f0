import pytest

from dfad_tf import models, profile


@pytest.mark.parametrize("name, input_shape, macs", [
    # conv1 28*28*5*5*1*6 + conv2 10*10*5*5*6*16 + conv3 5*5*16*120 + fc 120*84 + fc 84*10
    ("lenet5", (32, 32, 1), 117_600 + 240_000 + 48_000 + 10_080 + 840),
    ("lenet5_half", (32, 32, 1), 58_800 + 60_000 + 12_000 + 2_520 + 420),
])
def test_multiply_adds_match_hand_counts(name, input_shape, macs):
    assert profile.macs_per_image(models.build_classifier(name, input_shape, 10)) == macs


def test_resnets_match_the_papers_flops_and_count_batchnorm_layers():
    resnet34 = models.build_classifier("resnet34_8x", (32, 32, 3), 10)
    assert profile.macs_per_image(resnet34) == pytest.approx(1.16e9, rel=0.01)  # paper Table 2: 1.16G
    assert profile.batchnorm_layers(resnet34) == 1 + 2 * 16 + 3  # stem, 2 per block, 3 projections
    assert profile.batchnorm_layers(models.build_classifier("lenet5", (32, 32, 1), 10)) == 0


def test_width_builds_scaled_copies_and_mobilenets_take_any_input():
    half = models.build_classifier("lenet5", (32, 32, 1), 10, width=0.5)
    assert half.count_params() == models.build_classifier("lenet5_half", (32, 32, 1), 10).count_params()
    for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
        student = models.build_classifier(name, (40, 36, 1), 7, width=0.5)
        assert student.name == name and student.output_shape == (None, 7)
        assert profile.input_convention_guess(student).startswith("not declared")  # no built-in rescaling
    narrow = models.build_classifier("mobilenet_v3_small", (32, 32, 1), 10, width=0.75)
    assert narrow.count_params() < models.build_classifier("mobilenet_v3_small", (32, 32, 1), 10).count_params()


def test_mobilenet_batchnorm_statistics_follow_a_moving_generator(tmp_path):
    import keras
    import numpy as np

    student = models.build_classifier("mobilenet_v3_small", (32, 32, 1), 10)
    images = np.random.default_rng(0).normal(3.0, 1.0, (4, 32, 32, 1)).astype("float32")
    for _ in range(5):  # 5 training steps on a new distribution: 41 % of the way there (0.5 % at momentum 0.999)
        student(images, training=True)
    first = next(layer for layer in student.layers if isinstance(layer, keras.layers.BatchNormalization))
    batch_mean = np.asarray(keras.Model(student.input, first.input)(images)).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(first.moving_mean, (1 - 0.9 ** 5) * batch_mean, rtol=1e-3, atol=1e-4)
    student.save(tmp_path / "student.keras")
    reloaded = keras.saving.load_model(tmp_path / "student.keras")
    assert {layer.momentum for layer in reloaded.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}


def test_separable_convolutions_are_counted_and_other_layers_are_named():
    import warnings

    import keras

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="separable")(inputs)
    tokens = keras.layers.Reshape((64, 6))(x)
    attended = keras.layers.MultiHeadAttention(2, 3, name="attention")(tokens, tokens)
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(keras.layers.Flatten()(attended)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        macs = profile.macs_per_image(model)
    # 8x8 positions x (3x3x4 depthwise + 4x6 pointwise), then the head's 384x10.
    assert macs == 64 * (3 * 3 * 4 + 4 * 6) + 64 * 6 * 10
    assert profile.uncounted_layers(model) == ["attention (MultiHeadAttention)"]
    assert [str(w.message) for w in caught] == [
        f"{model.name}: the multiply-adds of these layers are not counted: attention (MultiHeadAttention)"]
    for name in ("lenet5", "resnet18_8x", "mobilenet_v3_small"):  # every built-in student is counted whole
        assert profile.uncounted_layers(models.build_classifier(name, (32, 32, 3), 10)) == [], name
