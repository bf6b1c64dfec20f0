import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import losses, models, objectives, optimizers
from dfad_tf.distiller import DataFreeDistiller

IMAGE = (16, 16, 1)


def small_bn_teacher():
    """Conv -> BN -> ReLU -> pool -> Dense(6) features -> Dense(3) logits, with set BN statistics."""
    inputs = keras.Input(IMAGE)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, activation="relu", name="features")(x)
    teacher = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    bn = teacher.get_layer("bn")
    bn.moving_mean.assign([0.1, -0.2, 0.3, 0.0])
    bn.moving_variance.assign([1.0, 2.0, 0.5, 1.5])
    return teacher


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_each_term_against_numpy():
    teacher = small_bn_teacher()
    images = np.random.default_rng(0).normal(size=(5, *IMAGE)).astype("float32")
    logits = teacher.predict(images, verbose=0)
    conv = keras.Model(teacher.inputs, teacher.get_layer("conv").output).predict(images, verbose=0)
    features = keras.Model(teacher.inputs, teacher.get_layer("features").output).predict(images, verbose=0)

    log_p = numpy_log_softmax(logits)
    expected_one_hot = -log_p[np.arange(5), logits.argmax(-1)].mean()
    mean_p = np.exp(log_p).mean(0)
    expected_balance = (mean_p * np.log(mean_p)).sum()
    bn = teacher.get_layer("bn")
    expected_bn = (np.linalg.norm(conv.mean((0, 1, 2)) - np.array(bn.moving_mean))
                   + np.linalg.norm(conv.var((0, 1, 2)) - np.array(bn.moving_variance)))
    running_var = np.array(bn.moving_variance) + bn.epsilon
    ratio = (conv.var((0, 1, 2)) + bn.epsilon) / running_var
    expected_bn_kl = (0.5 * (ratio + (conv.mean((0, 1, 2)) - np.array(bn.moving_mean)) ** 2 / running_var - 1
                             - np.log(ratio))).mean()
    variation = np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean()
    expected = {"one_hot": expected_one_hot, "balance": expected_balance, "batchnorm": expected_bn,
                "batchnorm_kl": expected_bn_kl,
                "activation": -np.abs(features).mean(), "smoothness": variation / images.std()}

    for term, value in expected.items():
        objective = objectives.GeneratorObjective(teacher, losses.get("mae"), {term: 1.0})
        assert float(objective(tf.constant(images), student=None)) == pytest.approx(value, rel=1e-4, abs=1e-5), term
    # The same in every input convention: [0, 255] pixels score as their normalised originals.
    assert float(objectives.smoothness_loss(255 * images + 3)) == pytest.approx(expected["smoothness"], rel=1e-4)
    weights = {"one_hot": 0.5, "activation": 2.0, "balance": 3.0, "batchnorm": 0.25, "smoothness": 0.5}
    combined = objectives.GeneratorObjective(teacher, losses.get("mae"), weights)
    assert float(combined(tf.constant(images), None)) == pytest.approx(
        sum(w * expected[t] for t, w in weights.items()), rel=1e-4)


def test_adversarial_term_is_the_negated_discrepancy():
    teacher, student = small_bn_teacher(), small_bn_teacher()
    images = tf.random.normal((4, *IMAGE), seed=1)
    objective = objectives.GeneratorObjective(teacher, losses.get("mae"))
    expected = -np.abs(teacher.predict(images, verbose=0) - student(images, training=True).numpy()).mean()
    assert float(objective(images, student)) == pytest.approx(expected, rel=1e-5)


def test_in_inference_mode_a_batchnorm_student_sees_near_uniform_images_as_flat_as_the_teacher_does():
    teacher, student = small_bn_teacher(), small_bn_teacher()
    student.get_layer("bn").epsilon = 1e-5  # PyTorch's, as the paper's students
    images = tf.random.normal((8, *IMAGE), seed=1)
    flat = 0.5 + 0.02 * images  # near-uniform: the same pattern at a fiftieth of the contrast
    uniform = student.predict(tf.fill(flat.shape, 0.5), verbose=0)
    # Training mode normalises by the batch's statistics: the student answers the flat images as the
    # contrasted ones (the contrast divides out), far from a uniform image, which the teacher sees them as:
    # a generator could win by flattening its images. Measured: 0.015-0.026 and 0.28-0.54 over three inits.
    in_training = student(flat, training=True)
    assert np.abs(in_training - student(images, training=True)).max() < 0.05
    assert np.abs(in_training - uniform).max() > 0.2
    # In inference mode (moving statistics) they are near-uniform to the student too (measured: <= 0.0014).
    in_inference = student.predict(flat, verbose=0)
    assert np.abs(in_inference - uniform).max() < 0.005
    statistics = [np.array(v) for v in student.non_trainable_weights]
    objective = objectives.GeneratorObjective(teacher, losses.get("mae"), student_training=False)
    expected = -np.abs(teacher.predict(flat, verbose=0) - in_inference).mean()
    assert float(objective(flat, student)) == pytest.approx(expected, rel=1e-5)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(statistics, student.non_trainable_weights))


@pytest.mark.parametrize("weights, message", [
    ({"adversarial": 1.0, "color": 1.0}, "unknown generator loss term"),
    ({"one_hot": -1.0}, ">= 0"),
    ({"adversarial": 0.0}, "at least one"),
])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        objectives.GeneratorObjective(small_bn_teacher(), losses.get("mae"), weights)


def test_batchnorm_term_needs_batchnorm_layers():
    lenet = models.build_classifier("lenet5", (32, 32, 1), 10)
    with pytest.raises(ValueError, match="BatchNormalization"):
        objectives.GeneratorObjective(lenet, losses.get("mae"), objectives.METHOD_WEIGHTS["dfad_bn"])


def distiller_for(method_weights, generator_trainable=True):
    teacher = models.build_classifier("resnet18_8x", (32, 32, 1), 10, width=0.125)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 8, (32, 32, 1), width=4)
    generator.trainable = generator_trainable
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=1)
    distiller.compile(*optimizers.paper_optimizers(0.05, 1e-2), generator_loss_weights=method_weights)
    return distiller


def trainable_snapshot(model):
    return [np.array(v) for v in model.trainable_weights]


def same(before, model):
    return all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.trainable_weights))


@pytest.mark.parametrize("method", sorted(objectives.METHOD_WEIGHTS))
def test_every_method_trains_the_generator_and_never_the_teacher(method):
    distiller = distiller_for(objectives.METHOD_WEIGHTS[method])
    teacher = [np.array(v) for v in distiller.teacher.weights]
    generator = trainable_snapshot(distiller.generator)
    distiller.fit(batch_size=8, steps_per_epoch=1, epochs=1, verbose=0)
    assert not same(generator, distiller.generator)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(teacher, distiller.teacher.weights))


def test_a_fixed_generator_is_never_updated_but_the_student_is():
    distiller = distiller_for(None, generator_trainable=False)
    generator, student = [np.array(v) for v in distiller.generator.weights], trainable_snapshot(distiller.student)
    history = distiller.fit(batch_size=8, steps_per_epoch=2, epochs=1, verbose=0)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(generator, distiller.generator.weights))
    assert not same(student, distiller.student)
    assert set(history.history) == {"loss_S"}  # no generation stage, so no generator loss
