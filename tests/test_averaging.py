"""Averages of the student's and the generator's weights: what they compute, what the distiller does with them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import averaging, models, optimizers
from dfad_tf.distiller import DataFreeDistiller


def distiller_and_weights_per_iteration(momentum, iterations):
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=1, student_average=momentum)
    distiller.compile(*optimizers.paper_optimizers(0.1, weight_decay=0), metrics=["accuracy"])
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(student.get_weights()))
    distiller.fit(batch_size=8, steps_per_epoch=iterations, epochs=1, verbose=0, callbacks=[record])
    return distiller, seen


def polynomial_decay_average(seen, momentum):
    """The average `WeightAverage` should hold after updates with the weights `seen`, computed in numpy."""
    expected = seen[0]  # the first update copies: no trace of the initial weights
    for n, weights in enumerate(seen[1:], start=1):
        weight = min(momentum, n / (n + 3))  # 0.25, 0.4, 0.5, 0.5, 0.5 for momentum 0.5
        expected = [weight * a + (1 - weight) * w for a, w in zip(expected, weights)]
    return expected


def test_the_average_weighs_recent_iterations_then_keeps_its_momentum():
    distiller, seen = distiller_and_weights_per_iteration(0.5, iterations=6)
    expected = polynomial_decay_average(seen, 0.5)
    kept = distiller.kept_student()
    assert kept is not distiller.student
    for got, want, last in zip(kept.get_weights(), expected, seen[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(want, last) for want, last in zip(expected, seen[-1]))  # not just the last student


def test_evaluate_measures_the_kept_student_and_without_an_average_that_is_the_student(digits_arrays):
    images, labels = digits_arrays
    distiller, _ = distiller_and_weights_per_iteration(0.9, iterations=5)
    kept = distiller.kept_student()
    result = distiller.evaluate(images, labels, batch_size=len(images), verbose=0, return_dict=True)
    kept_outputs, teacher_outputs = kept.predict(images, verbose=0), distiller.teacher.predict(images, verbose=0)
    assert result["loss_S"] == pytest.approx(float(np.mean(np.abs(teacher_outputs - kept_outputs))), rel=1e-4)
    assert result["accuracy"] == pytest.approx(float(np.mean(kept_outputs.argmax(-1) == labels)))
    student_outputs = distiller.student.predict(images, verbose=0)
    assert not np.allclose(student_outputs, kept_outputs)
    plain, _ = distiller_and_weights_per_iteration(0.0, iterations=1)
    assert plain.kept_student() is plain.student and plain.average is None


@pytest.mark.parametrize("momentum", [1.0, -0.1])
def test_a_momentum_outside_zero_to_one_is_refused(momentum):
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    with pytest.raises(ValueError, match=r"momentum \(student_average\) must be in \[0, 1\)"):
        averaging.WeightAverage(student, momentum)
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    with pytest.raises(ValueError, match=r"momentum \(student_average\) must be in \[0, 1\)"):
        DataFreeDistiller(models.build_classifier("lenet5", (32, 32, 1), 10), student, generator,
                          student_average=momentum)
    with pytest.raises(ValueError, match=r"momentum \(generator_average\) must be in \[0, 1\)"):
        DataFreeDistiller(models.build_classifier("lenet5", (32, 32, 1), 10), student, generator,
                          generator_average=momentum)


def test_the_generators_average_makes_half_of_the_students_images():
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=1, generator_average=0.5)
    distiller.compile(*optimizers.paper_optimizers(0.1, 1e-2, weight_decay=0))
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(generator.get_weights()))
    distiller.fit(batch_size=8, steps_per_epoch=5, epochs=1, verbose=0, callbacks=[record])
    expected = polynomial_decay_average(seen, 0.5)  # updated after each generation step
    averaged = keras.models.clone_model(generator)
    averaged.set_weights([np.asarray(v) for v in distiller.generator_average.values(generator.weights)])
    for got, want in zip(averaged.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

    noise = distiller.latent_noise(8, 0)[:, 0]
    images = distiller._imitation_images(noise, tf.range(8)).numpy()
    np.testing.assert_allclose(images[:4], generator(noise[0::2], training=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(images[4:], averaged(noise[1::2], training=True), rtol=1e-5, atol=1e-6)
    assert not np.allclose(images[4:], generator(noise[1::2], training=True), atol=1e-3)
    generator.trainable = False  # a fixed generator never moves: nothing to average
    assert DataFreeDistiller(teacher, student, generator, generator_average=0.5).generator_average is None
