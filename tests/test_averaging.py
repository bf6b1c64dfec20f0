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


def batchnorm_student():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Conv2D(3, 1)(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))


def test_measured_statistics_are_the_averaged_weights_batch_statistics_averaged_like_the_weights():
    keras.utils.set_random_seed(0)
    student = batchnorm_student()
    conv, batchnorm = student.layers[1], student.layers[2]
    average = averaging.WeightAverage(student, momentum=0.5)
    batches = [np.random.default_rng(n).normal(n, 1 + n, (16, 4, 4, 2)).astype("float32") for n in range(4)]
    own_mean = np.asarray(batchnorm.moving_mean).copy()
    expected_mean = expected_variance = None
    for n, images in enumerate(batches):
        conv.kernel.assign(conv.kernel * 1.5)  # the student moves between updates
        average.update(student, statistics_images=images)
        kernel = np.asarray(average.averages[conv.kernel.path]).reshape(2, 3)
        bias = np.asarray(average.averages[conv.bias.path])
        features = images.reshape(-1, 2) @ kernel + bias  # the averaged weights' conv outputs
        weight = min(0.5, n / (n + 3))
        mean, variance = features.mean(0), features.var(0)
        expected_mean = mean if n == 0 else weight * expected_mean + (1 - weight) * mean
        expected_variance = variance if n == 0 else weight * expected_variance + (1 - weight) * variance
        np.testing.assert_allclose(average.averages[batchnorm.moving_mean.path], expected_mean, rtol=1e-4)
        np.testing.assert_allclose(average.averages[batchnorm.moving_variance.path], expected_variance, rtol=1e-4)
    np.testing.assert_array_equal(batchnorm.moving_mean, own_mean)  # the student's own statistics untouched


def test_the_statistics_memory_fills_with_generated_images_and_sets_the_kept_students_statistics():
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    student = models.build_classifier("mobilenet_v3_small", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 16, (32, 32, 1), width=4)
    runs = {}
    for memory in (0, 64):
        keras.utils.set_random_seed(0)
        student_copy = keras.models.clone_model(student)
        distiller = DataFreeDistiller(teacher, student_copy, generator if memory == 0 else
                                      keras.models.clone_model(generator), imitation_steps=1,
                                      student_average=0.9, statistics_memory=memory)
        distiller.compile(*optimizers.paper_optimizers(0.01, weight_decay=0))
        distiller.fit(batch_size=8, steps_per_epoch=3, epochs=1, verbose=0)
        runs[memory] = distiller
    measured = runs[64]
    assert int(measured.statistics_memory.size) == 3 * 8  # the first imitation batch of each iteration
    assert runs[0].statistics_memory is None
    path = next(v.path for v in student.non_trainable_variables if "moving_variance" in v.path)
    kept = {memory: np.asarray(run.average.averages[path]) for memory, run in runs.items()}
    assert not np.allclose(kept[64], kept[0])  # measured, not averaged from the student's own statistics
    assert {v.path for v in measured.statistics_memory.weights} <= {v.path for v in measured.weights}  # resumed
    with pytest.raises(ValueError, match="statistics_memory .* needs student_average"):
        DataFreeDistiller(teacher, student, generator, statistics_memory=64)
