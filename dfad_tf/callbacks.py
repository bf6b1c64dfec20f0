"""Callbacks for the side jobs of a DFAD run: pictures, data-free model selection, the best student."""

import csv
import os

import keras
import numpy as np
import tensorflow as tf

from dfad_tf import fileio, precision


def _fixed_latents(num, latent_dim, seed):
    return np.random.default_rng(seed).standard_normal((num, latent_dim)).astype("float32")


def _stretch(images):
    """Each image stretched to [0, 1] on its own, grey images made RGB."""
    images = np.asarray(images, dtype="float32")
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    images = (images - low) / np.maximum(high - low, 1e-8)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def image_grid(images, stretch=True):
    """Tiles `(n, h, w, c)` images into one uint8 `(rows*h, cols*w, c)` picture.

    Args:
        images: float images.
        stretch: stretch each image to the full 0-255 range on its own, since
            generated samples have no fixed pixel range; False for images
            already in [0, 1] (see `side_by_side`).
    """
    images = _stretch(images) if stretch else np.asarray(images, dtype="float32")
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype="float32")
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        grid[row * h:(row + 1) * h, col * w:(col + 1) * w] = image
    return (grid * 255).round().astype("uint8")


def color_masks(labels, num_classes):
    """Paints integer label maps `(n, h, w)` in a fixed palette: float `(n, h, w, 3)` in [0, 1].

    Class `c` gets a distinct colour (hues spread over the classes, alternating
    brightness); labels outside `0..num_classes-1` (ignored pixels) are black.

    Example:
    >>> color_masks(np.argmax(teacher(images), axis=-1), 11).shape
    (64, 128, 128, 3)
    """
    import matplotlib.colors

    hues = np.arange(num_classes) / max(num_classes, 1)
    values = np.where(np.arange(num_classes) % 2, 0.65, 1.0)
    palette = matplotlib.colors.hsv_to_rgb(np.stack([hues, np.full(num_classes, 0.8), values], axis=-1))
    palette = np.concatenate([palette, np.zeros((1, 3))]).astype("float32")
    labels = np.asarray(labels)
    return palette[np.where((labels >= 0) & (labels < num_classes), labels, num_classes)]


def side_by_side(images, *masks, num_classes):
    """Each image followed by its coloured masks, as one wider image: `(n, h, w * (1 + len(masks)), 3)`."""
    return np.concatenate([_stretch(images), *(color_masks(m, num_classes) for m in masks)], axis=2)


class GeneratedImages(keras.callbacks.Callback):
    """Each epoch, draws generated samples from fixed noise to TensorBoard and PNG.

    For a segmentation teacher each sample is drawn beside the mask the teacher
    predicts on it (the paper's Fig. 6).

    Args:
        log_dir: TensorBoard directory; images go to its `samples` subfolder.
        image_dir: folder for `epoch_NNN.png` files (None for none).
        num_images: images in the grid.
        seed: seed of the fixed noise.

    Example:
    >>> distiller.fit(batch_size=256, callbacks=[GeneratedImages("runs/x/logs", "runs/x/samples")])
    """

    def __init__(self, log_dir, image_dir=None, num_images=64, seed=0):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))
        self.image_dir = image_dir
        self.num_images = num_images
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        generator, teacher = self.model.generator, self.model.teacher
        latents = _fixed_latents(self.num_images, generator.input_shape[-1], self.seed)
        images = np.asarray(generator(latents, training=False))
        if len(teacher.output_shape) == 4:
            masks = np.argmax(teacher(images, training=False), axis=-1)
            grid = image_grid(side_by_side(images, masks, num_classes=teacher.output_shape[-1]), stretch=False)
        else:
            grid = image_grid(images)
        _write_picture(self.writer, "generated_samples", grid, epoch,
                       self.image_dir and os.path.join(self.image_dir, f"epoch_{epoch + 1:03d}.png"))


class SegmentationPictures(keras.callbacks.Callback):
    """Each epoch, draws real images with their true, teacher and student masks.

    Rows of image | ground truth | teacher | student, to TensorBoard and PNG,
    for a segmentation run with labelled data.

    Args:
        images: a few real images, in the teacher's input convention.
        labels: their `(n, h, w)` label maps.
        log_dir: TensorBoard directory; pictures go to its `samples` subfolder.
        image_dir: folder for `real_epoch_NNN.png` files (None for none).

    Example:
    >>> SegmentationPictures(test_images[:8], test_labels[:8], "runs/x/logs", "runs/x/samples")
    """

    def __init__(self, images, labels, log_dir, image_dir=None):
        super().__init__()
        self.images, self.labels = np.asarray(images), np.asarray(labels)
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))
        self.image_dir = image_dir

    def on_epoch_end(self, epoch, logs=None):
        distiller = self.model
        teacher = np.argmax(distiller.teacher(self.images, training=False), axis=-1)
        student = np.argmax(distiller.student(self.images, training=False), axis=-1)
        rows = side_by_side(self.images, self.labels, teacher, student,
                            num_classes=distiller.teacher.output_shape[-1])
        _write_picture(self.writer, "real_images_truth_teacher_student", image_grid(rows, stretch=False), epoch,
                       self.image_dir and os.path.join(self.image_dir, f"real_epoch_{epoch + 1:03d}.png"))


def _write_picture(writer, name, picture, epoch, png_path=None):
    with writer.as_default():
        tf.summary.image(name, picture[None], step=epoch + 1)
    writer.flush()
    if png_path:
        with fileio.atomic_path(png_path) as tmp:
            tf.io.write_file(tmp, tf.io.encode_png(picture))


class GeneratedAgreement(keras.callbacks.Callback):
    """Adds `gen_agreement` to the epoch logs: a model-selection signal without data.

    The fraction of a fixed bank of generated images (fixed noise through the
    current generator, in inference mode) on which the student's top-1 class
    equals the teacher's (for segmentation, the fraction of their pixels). The
    generator is trained to find images where the two disagree, so a student
    that agrees on them has caught up with the hardest samples the run can
    make. Put this callback before any that reads it.

    Args:
        num_samples: size of the noise bank.
        seed: seed of the noise bank.
        batch_size: images per forward pass.

    Example:
    >>> callbacks = [GeneratedAgreement(), BestStudentCheckpoint("student.keras", "gen_agreement")]
    """

    def __init__(self, num_samples=2048, seed=1, batch_size=512):
        super().__init__()
        self.num_samples = num_samples
        self.seed = seed
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        distiller = self.model
        latents = _fixed_latents(self.num_samples, distiller.generator.input_shape[-1], self.seed)
        agree = 0
        for start in range(0, self.num_samples, self.batch_size):
            images = distiller.generator(latents[start:start + self.batch_size], training=False)
            teacher = np.argmax(distiller.teacher(images, training=False), axis=-1)
            student = np.argmax(distiller.student(images, training=False), axis=-1)
            agree += float(np.mean(teacher == student)) * len(images)
        if logs is not None:
            logs["gen_agreement"] = agree / self.num_samples


class BestStudentCheckpoint(keras.callbacks.Callback):
    """Saves the student whenever `monitor` reaches a new best, never a worse one.

    The best value is kept in a JSON file beside the model, so a resumed or a
    repeated run in the same place only replaces the student when it beats the
    one already on disk.

    Args:
        filepath: where the student is saved (`.keras`).
        monitor: log key to maximise, e.g. "val_accuracy" or "gen_agreement".
        record_path: JSON file with the best value and epoch (default:
            `filepath` with `.json` instead of `.keras`).
        extra_record: dict stored in the record with each save (the run's
            configuration, say).
        generator_path: where to save the generator of the same epoch
            (`.keras`; None for not at all). Saved with the student, a killed
            and resumed run always has the generator of its best student.

    Example:
    >>> BestStudentCheckpoint("runs/x/student.keras", monitor="val_accuracy")
    """

    def __init__(self, filepath, monitor="val_accuracy", record_path=None, extra_record=None,
                 generator_path=None):
        super().__init__()
        self.filepath = filepath
        self.generator_path = generator_path
        self.monitor = monitor
        self.record_path = record_path or os.path.splitext(filepath)[0] + ".json"
        self.extra_record = extra_record or {}
        self.improved = False

    @property
    def record(self):
        """The saved best: `{"monitor", "value", "epoch", ...}`, or None."""
        return fileio.read_json(self.record_path)

    def on_train_begin(self, logs=None):
        record = self.record
        if record is not None and record["monitor"] != self.monitor:
            raise ValueError(
                f"{self.record_path} records a student chosen by {record['monitor']!r}, "
                f"not comparable with {self.monitor!r}: use another output directory"
            )
        self.best = -np.inf if record is None else record["value"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"BestStudentCheckpoint: {self.monitor!r} is not in the logs {sorted(logs or {})}")
        if value > self.best:
            self.best = float(value)
            self.improved = True
            with fileio.atomic_path(self.filepath) as tmp:
                precision.float32_copy(self.model.student).save(tmp)
            if self.generator_path:
                with fileio.atomic_path(self.generator_path) as tmp:
                    precision.float32_copy(self.model.generator).save(tmp)
            # The record last: killed before it, the files on disk are at least as good as it says.
            fileio.write_json(self.record_path, {
                **self.extra_record, "monitor": self.monitor, "value": self.best, "epoch": epoch + 1,
            })


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the whole training state after each epoch; `fit` resumes from it.

    Like `keras.callbacks.BackupAndRestore`, but safe against a kill at any
    moment: the state is one weights file (student, generator, both
    optimizers with their schedules' step counts, and the distiller's
    `iteration`, which keys the latent noise) renamed into place, so a restart
    finds the previous or the new backup, never a torn one, and the epoch to
    resume from is derived from `iteration` in the same file. In a
    multi-worker run every worker restores the backup but only the one that
    writes files saves it. Put it last among the callbacks, so that an epoch
    counts as done only after the other callbacks have finished with it.

    Args:
        backup_dir: directory of the backup; removed when `fit` completes.
        write: whether this process saves the backup (False on non-chief
            workers, which only read it).

    Example:
    >>> distiller.fit(batch_size=256, epochs=40, callbacks=[..., TrainingBackup("runs/x/backup")])
    """

    def __init__(self, backup_dir, write=True):
        super().__init__()
        self.backup_dir = backup_dir
        self.path = os.path.join(backup_dir, "state.weights.h5")
        self.write = write

    @property
    def exists(self):
        """Whether there is a backup to resume from."""
        return fileio.exists(self.path)

    def on_train_begin(self, logs=None):
        if not self.exists:
            return
        self.model.load_weights(self.path)
        iterations, steps = int(self.model.iteration.numpy()), self.params["steps"]
        if iterations % steps:
            raise ValueError(f"{self.path} holds {iterations} iterations, not whole epochs of {steps}: "
                             "resume with the --iterations_per_epoch of the interrupted run")
        self.model._initial_epoch = iterations // steps  # as BackupAndRestore does: Keras has no public hook

    def on_epoch_end(self, epoch, logs=None):
        if self.write:
            with fileio.atomic_path(self.path) as tmp:
                self.model.save_weights(tmp)

    def on_train_end(self, logs=None):
        if self.write:
            fileio.remove_tree(self.backup_dir)


class HistoryCSV(keras.callbacks.Callback):
    """`keras.callbacks.CSVLogger`'s file, rewritten whole and atomically after each epoch.

    CSVLogger appends to an open file, which gs:// cannot do and a kill can
    leave half-written; this works on any filesystem `fileio` does.

    Args:
        path: the CSV file: an `epoch` column, then the logs' keys in order.
        append: keep the rows already in `path` (a resumed run).

    Example:
    >>> distiller.fit(..., callbacks=[HistoryCSV("gs://bucket/run/history.csv")])
    """

    def __init__(self, path, append=False):
        super().__init__()
        self.path = path
        self.append = append
        self.rows = []

    def on_train_begin(self, logs=None):
        self.rows = []
        if self.append and fileio.exists(self.path):
            with tf.io.gfile.GFile(self.path) as file:
                self.rows = list(csv.DictReader(file))

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **(logs or {})})
        keys = ["epoch"] + sorted({key for row in self.rows for key in row} - {"epoch"})
        with fileio.atomic_path(self.path) as tmp, open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, keys, restval="NA")
            writer.writeheader()
            writer.writerows(self.rows)
