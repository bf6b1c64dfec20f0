"""The side jobs of a run: stopping on NaN, agreement, pictures and curves."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from dfad_tf import callbacks, models, optimizers
from dfad_tf.distiller import DataFreeDistiller

IMAGE = (32, 32, 1)


class NaNWhenBright(keras.layers.Layer):
    """Adds NaN to the logits of images whose mean pixel is above `threshold`, nothing to the others."""

    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def call(self, inputs):
        logits, images = inputs
        return logits + 0.0 * ops.sqrt(self.threshold - ops.mean(images, axis=(1, 2, 3)))[:, None]


def distiller_of(teacher, student_lr=0.05, generator=None):
    student = models.build_classifier("lenet5_half", IMAGE, 10)
    generator = generator or models.build_generator("generator_a", 8, IMAGE, width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=2, seed=0)
    distiller.compile(*optimizers.paper_optimizers(student_lr, 1e-3, iterations_per_epoch=2, imitation_steps=2))
    return distiller


@pytest.fixture(scope="module")
def lenet():
    return models.build_classifier("lenet5", IMAGE, 10)


def test_a_teacher_giving_nan_on_some_generated_images_stops_the_run_at_once(lenet):
    generator = models.build_generator("generator_a", 8, IMAGE, width=4)
    generated = np.asarray(generator(np.random.default_rng(0).standard_normal((64, 8)), training=True))
    images = keras.Input(IMAGE)
    teacher = keras.Model(images, NaNWhenBright(np.median(generated.mean(axis=(1, 2, 3))))([lenet(images), images]))
    assert 0.3 < np.isnan(np.asarray(teacher(generated))).any(-1).mean() < 0.7  # NaN for some generated images only
    distiller = distiller_of(teacher, generator=generator)
    with pytest.raises(callbacks.DivergedError, match="DFAD iteration 1: the teacher's outputs") as error:
        distiller.fit(batch_size=16, steps_per_epoch=2, epochs=3, verbose=0, callbacks=[callbacks.StopOnDivergence()])
    assert error.value.model == "teacher" and error.value.iteration == 1
    assert "\n" not in str(error.value)


def test_a_diverging_student_stops_the_run_naming_the_student(lenet):
    distiller = distiller_of(lenet, student_lr=1000.0)
    with pytest.raises(callbacks.DivergedError,
                       match=r"loss_S = .* at DFAD iteration 1: the student diverged") as error:
        distiller.fit(batch_size=16, steps_per_epoch=5, epochs=4, verbose=0, callbacks=[callbacks.StopOnDivergence()])
    assert error.value.model == "student" and error.value.iteration == 1
    assert int(distiller.iteration.numpy()) == error.value.iteration  # stopped at once, not at the epoch's end


def test_nan_outputs_never_count_as_agreement(lenet):
    distiller = distiller_of(lenet)
    agreement = callbacks.GeneratedAgreement(num_samples=64)
    agreement.set_model(distiller)
    logs = {}
    agreement.on_epoch_end(0, logs)
    assert logs["gen_agreement"] < 1  # an untrained student disagrees somewhere
    images = distiller.generator(callbacks._fixed_latents(64, distiller.generator.input_shape[-1], 1), training=False)
    classes = [np.argmax(model(images, training=False), -1) for model in (distiller.teacher, distiller.student)]
    assert logs["gen_agreement"] == pytest.approx(np.mean(classes[0] == classes[1]))
    distiller.student.get_layer(index=-1).bias.assign(np.full(10, np.nan, "float32"))
    agreement.on_epoch_end(1, logs)
    assert logs["gen_agreement"] == 0.0



def test_run_images_agreement_scores_the_kept_student_on_all_the_run_images_and_keeps_the_better_one(lenet):
    distiller = distiller_of(lenet)
    choice = callbacks.RunImagesAgreement(per_epoch=16, capacity=40, seed=3)
    choice.set_model(distiller)
    choice.on_train_begin()

    def agreement():  # numpy, of the student on the bank as it stands
        classes = [np.argmax(model(choice.images, training=False), -1) for model in (distiller.teacher,
                                                                                      distiller.student)]
        assert np.array_equal(classes[0], choice.teacher_classes)
        return np.mean(classes[0] == classes[1])

    bias = distiller.student.get_layer(index=-1).bias
    logs = {}
    bias.assign(np.full(10, np.nan, "float32"))  # a student that agrees nowhere: NaN outputs
    choice.on_epoch_end(0, logs)
    assert choice.images.shape == (16, *IMAGE) and logs == {"run_agreement": 0.0, "run_choice": 1}  # the first
    # A student that says the teacher's most frequent class on the bank, whatever the random weights of both:
    # an untrained student may agree with an untrained teacher on none of a few images.
    trained = np.zeros(10, "float32")
    trained[np.bincount(choice.teacher_classes, minlength=10).argmax()] = 1e4
    bias.assign(trained)
    choice.on_epoch_end(1, logs)  # a student that agrees somewhere wins
    assert choice.images.shape == (32, *IMAGE) and logs["run_choice"] == 2
    assert 0 < logs["run_agreement"] == pytest.approx(agreement())
    bias.assign(np.full(10, np.nan, "float32"))
    choice.on_epoch_end(2, logs)  # and is kept against a worse one, scored on the grown bank
    assert logs == {"run_agreement": 0.0, "run_choice": 2}
    assert choice.images.shape == (40, *IMAGE) and choice.count == 48  # full: a sample of the 48 offered
    bias.assign(trained)
    assert choice.chosen_agreement.mean() == pytest.approx(agreement())
    assert all(np.array_equal(a, b) for a, b in zip(choice.chosen_weights, distiller.student.get_weights()))


def test_images_the_teacher_gives_no_finite_output_join_the_bank_with_no_class(lenet):
    generator = models.build_generator("generator_a", 8, IMAGE, width=4)
    latents = np.random.default_rng([3, 0]).standard_normal((16, 8)).astype("float32")
    bright = np.asarray(generator(latents, training=False)).mean(axis=(1, 2, 3))
    images = keras.Input(IMAGE)
    teacher = keras.Model(images, NaNWhenBright(np.median(bright))([lenet(images), images]))
    distiller = distiller_of(teacher, generator=generator)
    choice = callbacks.RunImagesAgreement(per_epoch=16, capacity=40, seed=3)  # the latents above: seed 3, epoch 0
    choice.set_model(distiller)
    choice.on_train_begin()
    logs = {}
    choice.on_epoch_end(0, logs)
    no_class = np.isnan(np.asarray(teacher(choice.images, training=False))).any(-1)
    assert 0 < no_class.sum() < 16 and np.all(choice.teacher_classes[no_class] == -1)
    # as in gen_agreement: no student agrees with the teacher on those images
    student_classes = np.argmax(distiller.student(choice.images, training=False), -1)
    assert logs["run_agreement"] == pytest.approx(np.mean(~no_class & (student_classes == choice.teacher_classes)))


def test_the_run_images_are_a_uniform_sample_of_all_offered():
    kept = np.zeros(1000)
    for seed in range(200):
        choice = callbacks.RunImagesAgreement(capacity=100, seed=seed)
        for start in range(0, 1000, 100):
            offered = np.arange(start, start + 100, dtype="float32")[:, None]
            choice._add(offered, np.zeros(100, "int64"))
        assert choice.count == 1000 and len(set(choice.images[:, 0])) == 100  # no image twice
        kept[choice.images[:, 0].astype(int)] += 1
    # Each image kept with probability 100 / 1000: the first hundred and the last alike (200 draws, std 4.2).
    assert kept.sum() == 200 * 100
    for block in kept.reshape(10, 100):
        assert block.mean() == pytest.approx(20, abs=2)

def test_the_labelled_grid_frames_in_red_exactly_the_tiles_where_the_student_disagrees():
    images = np.zeros((2, 16, 16, 1), "float32")
    images[:, 4:12, 4:12] = 1.0
    for student_classes, red_tile in (([0, 7], 1), ([5, 1], 0)):  # two tiles side by side
        picture = callbacks.labelled_grid(images, [0, 1], student_classes)
        red = (picture[..., 0] > 200) & (picture[..., 1] < 60) & (picture[..., 2] < 60)
        halves = np.array_split(red, 2, axis=1)
        assert halves[red_tile].sum() > 100 and halves[1 - red_tile].sum() == 0


def test_the_labelled_grid_titles_each_tile_in_black_or_red():
    images = np.ones((2, 16, 16, 1), "float32")  # white tiles: any dark or red pixel is a frame or a title
    images[0, 0, 0] = 0.0
    picture = callbacks.labelled_grid(images, [3, 4], [3, 8]).astype(int)
    tiles = np.array_split(picture[picture.shape[0] // 3:], 2, axis=1)  # below the header
    black = [((tile.max(axis=-1) < 100)).sum() for tile in tiles]
    red_text = [((tile[..., 0] > 200) & (tile[..., 1] < 150) & (tile[..., 1] > 20)).sum() for tile in tiles]
    assert black[0] > 10 and red_text[0] == 0  # "3" in black (antialiased edges are grey, not pink)
    assert red_text[1] > 10  # "4 / 8" in red
    header = picture[:picture.shape[0] // 8]
    assert (header.max(axis=-1) < 100).sum() > 50  # the line above the grid is written


def test_the_curves_are_redrawn_at_most_every_refresh_seconds_and_at_the_end(tmp_path):
    history, png = tmp_path / "history.csv", tmp_path / "curves.png"
    curves = callbacks.TrainingCurves(str(history), str(png), refresh_seconds=3600)
    drawn = []
    for epoch in range(3):
        history.write_text("epoch,loss_S\n" + "".join(f"{e},{1.0 / (e + 1)}\n" for e in range(epoch + 1)))
        curves.on_epoch_end(epoch)
        drawn.append(png.read_bytes())
    curves.on_train_end()
    assert drawn[0] == drawn[1] == drawn[2]  # the first epoch drawn, then not within the hour
    assert png.read_bytes() != drawn[0]  # the last epochs drawn at the end
    every_epoch = callbacks.TrainingCurves(str(history), str(tmp_path / "every.png"), refresh_seconds=0)
    every_epoch.on_epoch_end(2)
    assert (tmp_path / "every.png").read_bytes() == png.read_bytes()  # the same picture of the same history


def test_one_scale_for_the_whole_grid():
    faint = np.full((2, 4, 4, 1), 0.1, "float32")
    faint[0, 0, 0], faint[1, 0, 0] = 0.2, 2.0  # the first image's contrast is a tenth of the second's
    grid = callbacks.image_grid(faint)
    first, second = grid[:4, :4, 0], grid[:4, 4:8, 0]
    assert second.max() == 255 and first.max() < 40  # not each stretched to full range


def read_events(directory):
    """{tag: [steps]} of the TensorBoard event files in `directory`."""
    import tensorflow as tf

    steps = {}
    for name in sorted(os.listdir(directory)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_pictures_curves_and_tensorboard_count_dfad_iterations(tmp_path, lenet, digits_arrays):
    distiller = distiller_of(lenet)
    distiller.compile(*optimizers.paper_optimizers(0.05, 1e-3, iterations_per_epoch=3, imitation_steps=2),
                      metrics=["accuracy"])
    images, labels = digits_arrays
    history, curves, logs = tmp_path / "history.csv", tmp_path / "curves.png", tmp_path / "logs"
    seen = []

    class CurvesExist(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getmtime(curves))

    distiller.fit(batch_size=8, steps_per_epoch=3, epochs=2, verbose=0, validation_data=(images[:32], labels[:32]),
                  callbacks=[callbacks.GeneratedAgreement(num_samples=32), keras.callbacks.CSVLogger(history),
                             callbacks.TrainingCurves(history, curves, 3), CurvesExist(),
                             callbacks.IterationScalars(logs), callbacks.GeneratedImages(logs, tmp_path / "samples",
                                                                                         num_images=16)])
    assert len(seen) == 2 and all(seen) and seen[1] >= seen[0]  # written after each epoch
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temporary left
    train, validation = read_events(logs / "train"), read_events(logs / "validation")
    assert train["loss_S"] == train["gen_agreement"] == [3, 6]  # DFAD iterations, not epochs or student steps
    assert validation["accuracy"] == validation["loss_S"] == [3, 6]
    assert read_events(logs / "samples")["generated_samples"] == [3, 6]
    picture = keras.utils.load_img(tmp_path / "samples" / "epoch_002.png")
    assert picture.size[0] > 4 * 32  # the tiles are drawn large enough to carry their titles
