import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import losses, models, optimizers
from dfad_tf.distiller import DataFreeDistiller

IMAGE = (32, 32, 1)
LATENT = 8


def tiny_distiller(imitation_steps=2, seed=0, loss="mae"):
    teacher = models.build_classifier("resnet18_8x", IMAGE, 10)  # has BatchNorm, unlike LeNet
    student = models.build_classifier("lenet5_half", IMAGE, 10)
    generator = models.build_generator("generator_a", LATENT, IMAGE, width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=imitation_steps, seed=seed)
    distiller.compile(*optimizers.paper_optimizers(0.05, 1e-2, iterations_per_epoch=2,
                                                   imitation_steps=imitation_steps),
                      loss=loss, metrics=["accuracy"])
    return distiller


def snapshot(model):
    return {v.path: np.array(v) for v in model.weights}


def changed(before, model, trainable_only=False):
    variables = model.trainable_weights if trainable_only else model.weights
    return {v.path for v in variables if not np.array_equal(before[v.path], np.array(v))}


def noise(distiller, batch=8):
    return distiller.latent_noise(batch, 0)


@pytest.mark.parametrize("step, draw, trained, kept", [
    ("_imitation_step", 0, "student", "generator"),
    ("_generation_step", -1, "generator", "student"),
], ids=["imitation", "generation"])
def test_each_step_changes_only_its_own_model(step, draw, trained, kept):
    distiller = tiny_distiller()
    trained, kept = getattr(distiller, trained), getattr(distiller, kept)
    before = {m.name: snapshot(m) for m in (distiller.teacher, trained, kept)}
    getattr(distiller, step)(noise(distiller)[:, draw])
    assert changed(before[trained.name], trained, trainable_only=True) == {v.path for v in trained.trainable_weights}
    assert not changed(before[kept.name], kept, trainable_only=True)
    assert not changed(before[distiller.teacher.name], distiller.teacher)


def test_generator_gets_gradients_through_the_teacher():
    distiller = tiny_distiller()
    z = noise(distiller)[:, 0]
    discrepancy = losses.get("mae")
    with tf.GradientTape() as tape:
        images = distiller.generator(z, training=True)
        # The student's outputs are constants here: every gradient comes through the teacher.
        student_outputs = tf.stop_gradient(distiller.student(images, training=True))
        loss = -discrepancy(distiller.teacher(images, training=False), student_outputs)
    gradients = tape.gradient(loss, distiller.generator.trainable_variables)
    assert all(g is not None for g in gradients)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients) > 0


def test_fit_runs_whole_iterations_in_one_graph_and_reports_losses():
    distiller = tiny_distiller(imitation_steps=3)
    python_calls = []
    generation_step = distiller._generation_step
    distiller._generation_step = lambda z: python_calls.append(1) or generation_step(z)
    history = distiller.fit(batch_size=8, steps_per_epoch=3, epochs=2, verbose=0)
    assert set(history.history) == {"loss_S", "loss_G"}
    assert history.history["loss_S"][0] > 0 and history.history["loss_G"][0] < 0
    # 3 imitation updates of the student and 1 generator update per iteration, 6 iterations.
    assert int(distiller.student_optimizer.iterations) == 18
    assert int(distiller.generator_optimizer.iterations) == 6
    # The Python body ran once, to trace the graph that then ran all 6 iterations.
    assert len(python_calls) == 1
    assert distiller.jit_compile is False  # XLA was no faster on CPU (benchmarks/README.md)


def test_fit_under_mixed_bfloat16_keeps_float32_weights_and_losses():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        distiller = tiny_distiller()
        history = distiller.fit(batch_size=8, steps_per_epoch=2, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert distiller.generator(noise(distiller)[:, 0]).dtype == "bfloat16"
    assert {v.dtype for v in distiller.student.trainable_weights + distiller.generator.trainable_weights} == {
        "float32"}
    assert np.isfinite(history.history["loss_S"][0]) and history.history["loss_G"][0] < 0


def test_latent_noise_is_reproducible_from_the_seed():
    first = tiny_distiller(imitation_steps=3, seed=7)
    again = tiny_distiller(imitation_steps=3, seed=7)
    other = tiny_distiller(imitation_steps=3, seed=8)
    batches = [[np.asarray(d.latent_noise(4, i)) for i in range(2)] for d in (first, again, other)]
    assert batches[0][0].shape == (4, 4, LATENT)  # batch, k + 1 draws, latent
    np.testing.assert_array_equal(batches[0], batches[1])
    assert not np.allclose(batches[0][0], batches[2][0])
    assert not np.allclose(batches[0][0], batches[0][1])


def test_evaluate_measures_the_student_on_labelled_images():
    distiller = tiny_distiller()
    images = np.random.default_rng(0).standard_normal((16, *IMAGE)).astype("float32")
    labels = np.argmax(distiller.student.predict(images, verbose=0), axis=-1)
    logs = distiller.evaluate(images, labels, return_dict=True, verbose=0)
    assert logs["accuracy"] == pytest.approx(1.0)
    expected = np.abs(distiller.teacher.predict(images, verbose=0) - distiller.student.predict(images, verbose=0))
    assert logs["loss_S"] == pytest.approx(expected.mean(), rel=1e-4)
    np.testing.assert_allclose(distiller(images), distiller.student(images))


def test_constructor_rejects_mismatched_models():
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", LATENT, (32, 32, 1), width=4)
    with pytest.raises(ValueError, match="output shapes differ"):
        DataFreeDistiller(teacher, models.build_classifier("lenet5_half", (32, 32, 1), 5), generator)
    with pytest.raises(ValueError, match="input shapes differ"):
        DataFreeDistiller(teacher, models.build_classifier("lenet5_half", (32, 32, 3), 10), generator)
    with pytest.raises(ValueError, match="generator makes images of shape"):
        DataFreeDistiller(teacher, models.build_classifier("lenet5_half", (32, 32, 1), 10),
                          models.build_generator("generator_a", LATENT, (28, 28, 1), width=4))
    with pytest.raises(ValueError, match="imitation_steps must be a positive integer"):
        DataFreeDistiller(teacher, models.build_classifier("lenet5_half", (32, 32, 1), 10), generator,
                          imitation_steps=0)
    with pytest.raises(ValueError, match="teacher must be a keras.Model"):
        DataFreeDistiller(lambda x: x, teacher, generator)


def test_teacher_is_frozen():
    distiller = tiny_distiller()
    assert not distiller.teacher.trainable
    assert not any(v.path.startswith(distiller.teacher.name) for v in distiller.trainable_variables)


@pytest.mark.parametrize("filesystem", ["local", "ram"])
def test_training_backup_resumes_models_both_optimizers_and_the_noise_stream(tmp_path, filesystem):
    from dfad_tf import fileio
    from dfad_tf.callbacks import TrainingBackup

    # ram:// is TensorFlow's in-memory filesystem, reached through tf.io.gfile as gs:// would be
    backup = str(tmp_path / "backup") if filesystem == "local" else "ram://resume_test/backup"
    first_iterations = []

    class Noise(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # the iteration that keys the epoch's first noise
            first_iterations.append(int(self.model.iteration.numpy()))

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.weights = [np.array(v) for v in self.model.weights]
                self.optimizer_weights = [np.array(v) for v in self.model.generator_optimizer.variables]
                raise RuntimeError("killed")

    interrupted = tiny_distiller(imitation_steps=2)
    stop = StopAfter()
    with pytest.raises(RuntimeError, match="killed"):
        interrupted.fit(batch_size=4, steps_per_epoch=2, epochs=4, verbose=0,
                        callbacks=[Noise(), TrainingBackup(backup), stop])

    class Check(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # runs after TrainingBackup restored the state
            for saved, variable in zip(stop.weights, self.model.weights):
                np.testing.assert_array_equal(saved, np.array(variable))
            for saved, variable in zip(stop.optimizer_weights, self.model.generator_optimizer.variables):
                np.testing.assert_array_equal(saved, np.array(variable))
            self.checked = True

    resumed = tiny_distiller(imitation_steps=2)
    check = Check()
    history = resumed.fit(batch_size=4, steps_per_epoch=2, epochs=4, verbose=0,
                          callbacks=[Noise(), TrainingBackup(backup), check])
    assert check.checked and history.epoch == [2, 3]
    # Epochs 0 and 1 drew the noise of iterations 0 to 3; the resumed run goes on from iteration 4.
    assert first_iterations == [0, 2, 4, 6]
    assert int(resumed.iteration.numpy()) == 4 * 2
    assert int(resumed.student_optimizer.iterations) == 4 * 2 * 2
    assert int(resumed.generator_optimizer.iterations) == 4 * 2
    assert not fileio.exists(backup)  # removed once the run completed


def test_saving_the_distiller_says_to_save_the_student_and_writes_nothing(tmp_path):
    distiller = tiny_distiller()
    message = r"^a DataFreeDistiller cannot be saved to .*d.keras; save its student instead: distiller.student.save"
    with pytest.raises(NotImplementedError, match=message):
        distiller.save(tmp_path / "d.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "c.keras"))
    with pytest.raises(NotImplementedError, match="distiller.student.save"):
        distiller.fit(batch_size=4, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[checkpoint])
    assert os.listdir(tmp_path) == []


def test_mixed_float16_scales_the_loss_of_both_optimizers():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        distiller = tiny_distiller(imitation_steps=1)
        history = distiller.fit(batch_size=4, steps_per_epoch=2, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for optimizer in (distiller.student_optimizer, distiller.generator_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert distiller.generator(np.zeros((1, LATENT)), training=False).dtype == "float16"
    assert int(distiller.student_optimizer.iterations) == 2 and int(distiller.generator_optimizer.iterations) == 2
    assert np.isfinite(history.history["loss_S"]).all()
