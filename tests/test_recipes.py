"""Named recipes: the paper's DFAD as published, and the default that switches its BatchNorm prior on by itself."""

import keras
import numpy as np
import pytest

from dfad_tf import conventions, models, recipes
from dfad_tf.data import digits


def test_the_paper_recipe_is_dfad_as_published():
    paper = recipes.RECIPES["paper"]
    assert (paper.standardize_logits, paper.clip_pixels, paper.replay_memory) == (False, False, 0)
    assert paper.generator_loss_weights(models.build_classifier("lenet5", (32, 32, 1), 10)) == {"adversarial": 1.0}


def test_the_batchnorm_prior_is_on_for_a_teacher_with_readable_batchnorm_and_off_otherwise(unit_bn_teacher, tmp_path):
    robust = recipes.RECIPES["robust"]
    assert robust.generator_loss_weights(unit_bn_teacher) == {"adversarial": 1.0,
                                                              "batchnorm_kl": robust.batchnorm_prior}
    no_batchnorm = models.build_classifier("lenet5", (32, 32, 1), 10)
    assert robust.generator_loss_weights(no_batchnorm) == {"adversarial": 1.0}
    # The same Conv-BN teacher as a SavedModel exposes no layer: no prior can be computed.
    unit_bn_teacher.export(tmp_path / "saved")
    wrapped = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.TFSMLayer(tmp_path / "saved")])
    assert robust.generator_loss_weights(wrapped) == {"adversarial": 1.0}


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
