"""Named recipes: the paper's DFAD as published, and the default that picks its parts for the teacher."""

import keras
import numpy as np
import pytest

from dfad_tf import conventions, models, recipes
from dfad_tf.data import digits


def test_the_paper_recipe_is_dfad_as_published():
    paper = recipes.RECIPES["paper"]
    as_published = {"standardize_logits": False, "clip_pixels": False, "generate_pixels": False, "replay_memory": 0,
                    "generator_average": 0.0, "generator_loss_weights": {"adversarial": 1.0},
                    "student_training_in_generator_step": True}
    assert paper.parts(models.build_classifier("lenet5", (32, 32, 1), 10)) == as_published
    assert paper.parts(conv_bn_classifier()) == as_published  # never a prior, even where one could be read
    assert paper.student_parts(conv_bn_classifier()) == {"student_average": 0.0}  # the trained student, always


def conv_bn_classifier():
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))


def test_where_batchnorm_can_be_read_its_prior_replaces_smoothness_standardised_logits_and_the_generators_average(
        unit_bn_teacher, tmp_path):
    robust = recipes.RECIPES["robust"]
    assert robust.parts(unit_bn_teacher) == {
        "standardize_logits": False, "clip_pixels": True, "generate_pixels": True, "replay_memory": 0,
        "generator_average": 0.0,
        "generator_loss_weights": {"adversarial": 1.0, "batchnorm": robust.batchnorm_prior},
        "student_training_in_generator_step": False}
    guarded = {"standardize_logits": True, "clip_pixels": True, "generate_pixels": False, "replay_memory": 0,
               "generator_average": robust.generator_average,
               "generator_loss_weights": {"adversarial": 1.0, "smoothness": robust.smoothness_prior},
               "student_training_in_generator_step": False}
    assert robust.parts(models.build_classifier("lenet5", (32, 32, 1), 10)) == guarded
    # The same Conv-BN teacher as a SavedModel keeps its BatchNorm layers in its graph: the prior reads them there.
    unit_bn_teacher.export(tmp_path / "saved", verbose=False)
    wrapped = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.TFSMLayer(tmp_path / "saved")])
    assert robust.parts(wrapped) == robust.parts(unit_bn_teacher)
    models.build_classifier("lenet5", (32, 32, 1), 10).export(tmp_path / "lenet", verbose=False)
    assert robust.parts(keras.Sequential([keras.Input((32, 32, 1)), keras.layers.TFSMLayer(tmp_path / "lenet")])) == (
        guarded)


def test_a_student_with_batchnorm_layers_is_kept_as_the_average_of_its_weights():
    robust = recipes.RECIPES["robust"]
    assert robust.student_average > 0
    assert robust.student_parts(models.build_classifier("lenet5_half", (32, 32, 1), 10)) == {"student_average": 0.0}
    assert robust.student_parts(conv_bn_classifier()) == {"student_average": robust.student_average}
    # keras.applications' MobileNets hold their BatchNorm layers in a nested model
    nested = keras.Sequential([keras.Input((32, 32, 1)), conv_bn_classifier()])
    assert robust.student_parts(nested) == {"student_average": robust.student_average}


@pytest.mark.parametrize("convention, expected", [("unit", (0.0, 1.0)), ("symmetric", (-1.0, 1.0)),
                                                  ("byte", (0.0, 255.0))])
def test_generated_pixels_are_clipped_to_the_real_range_of_the_teacher_convention(convention, expected):
    input_map = conventions.to_teacher_input(convention, digits.SPEC.mean, digits.SPEC.std)
    low, high = conventions.pixel_range(*input_map, digits.SPEC.mean, digits.SPEC.std)
    assert (low, high) == pytest.approx(expected, rel=1e-6, abs=1e-5)
    # The normalised range itself: black and white pixels after the dataset's normalisation.
    assert conventions.pixel_range(1.0, 0.0, digits.SPEC.mean, digits.SPEC.std) == pytest.approx(
        ((0 - digits.SPEC.mean[0]) / digits.SPEC.std[0], (1 - digits.SPEC.mean[0]) / digits.SPEC.std[0]))
    generator = conventions.adapt_generator(models.build_generator("generator_a", 8, (32, 32, 1), width=4),
                                            *input_map, clip_to=(low, high))
    images = np.asarray(generator(np.random.default_rng(0).standard_normal((16, 8)).astype("float32"),
                                  training=True))
    assert images.min() == pytest.approx(low) and images.max() <= high + 1e-6  # many pixels would be darker
    assert np.mean(images == images.min()) > 0.05
    ramp = np.linspace(low - 100, high + 100, 64, dtype="float32").reshape(1, 8, 8, 1)
    np.testing.assert_allclose(generator.layers[-1](ramp), np.clip(ramp, low, high))
    rebuilt = keras.models.clone_model(generator)  # the clipping layer serialises
    assert rebuilt.layers[-1].get_config()["high"] == pytest.approx(high)
