"""Callbacks for the side jobs of a DFAD run: pictures, data-free model selection, the best student."""

import csv
import functools
import os
import time

import h5py
import keras
import matplotlib.colors
import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dfad_tf import fileio, precision

CALLBACK_STATES = "callback_states"  # the group of TrainingBackup's file holding the callbacks' states


def _fixed_latents(num, latent_dim, seed):
    return np.random.default_rng(seed).standard_normal((num, latent_dim)).astype("float32")


def _common_scale(images):
    """All images mapped to [0, 1] by one scale (their joint 0.5th to 99.5th percentile), grey made RGB.

    Generated samples have no fixed pixel range, but one scale for the whole
    grid keeps their contrasts comparable, unlike stretching each on its own.
    """
    images = np.asarray(images, dtype="float32")
    finite = images[np.isfinite(images)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    images = np.clip((np.nan_to_num(images, nan=low) - low) / max(high - low, 1e-8), 0, 1)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def image_grid(images, rescale=True):
    """Tiles `(n, h, w, c)` images into one uint8 `(rows*h, cols*w, c)` picture.

    Args:
        images: float images.
        rescale: map the images to [0, 1] by one common scale
            (`_common_scale`), since generated samples have no fixed pixel
            range; False for images already in [0, 1] (see `side_by_side`).
    """
    images = _common_scale(images) if rescale else np.asarray(images, dtype="float32")
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype="float32")
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        grid[row * h:(row + 1) * h, col * w:(col + 1) * w] = image
    return (grid * 255).round().astype("uint8")


def labelled_grid(images, teacher_classes, student_classes, class_names=None):
    """Generated samples on one common scale, each titled with the teacher's class, disagreements marked.

    A tile where the student's class differs is framed in red and titled
    "teacher / student" in red, so a reader sees what the generator draws and
    where the student does not yet follow.

    Args:
        images: float images `(n, h, w, c)`.
        teacher_classes, student_classes: integer classes `(n,)`.
        class_names: names of the classes (default: their numbers).

    Returns:
        A uint8 RGB picture `(height, width, 3)`.

    Example:
    >>> picture = labelled_grid(images, teacher(images).argmax(-1), student(images).argmax(-1))
    """
    images = _common_scale(images)
    name = (lambda c: str(class_names[c])) if class_names else str
    teacher_classes, student_classes = np.asarray(teacher_classes), np.asarray(student_classes)
    n, height, width, _ = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    # Room around each tile for its frame and above it for its title; then the whole grid is enlarged by a
    # whole factor to about 88 pixels a column, so that a 9-point title fits above a small image.
    frame = max(1, width // 16)
    cell_width, cell_height = width + 4 * frame, height + 2 * frame + max(6, height // 3)
    canvas = np.ones((rows * cell_height, cols * cell_width, 3), "float32")
    titles = []
    for i in range(n):
        row, col = divmod(i, cols)
        top, left = (row + 1) * cell_height - height - frame, col * cell_width + 2 * frame
        teacher, student = int(teacher_classes[i]), int(student_classes[i])
        if teacher != student:
            canvas[top - frame:top + height + frame, left - frame:left + width + frame] = (1.0, 0.0, 0.0)
        canvas[top:top + height, left:left + width] = images[i]
        title = name(teacher) if teacher == student else f"{name(teacher)} / {name(student)}"
        titles.append((title, teacher != student, left + width / 2, top - frame))
    scale = max(1, round(88 / cell_width))
    canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
    for title, red, center, bottom in titles:
        _stamp(canvas, _text_bitmap(title, red), center=center * scale, bottom=bottom * scale - 1)
    agree = int(np.sum(teacher_classes == student_classes))
    header = _text_bitmap(f"title: teacher's class; red: the student says otherwise ({n - agree} of {n})", False)
    band = np.ones((header.shape[0] + 14, canvas.shape[1], 3), "float32")
    _stamp(band, header, center=band.shape[1] / 2, bottom=band.shape[0] - 7)
    return (np.concatenate([band, canvas]) * 255).round().astype("uint8")


@functools.lru_cache(maxsize=1024)
def _text_bitmap(text, red):
    """A 9-point title as ink: how much it takes from each pixel's red, green and blue, float `(h, w, 3)`.

    Red and bold titles take only green and blue, black ones all three.

    matplotlib draws each title once: a picture has few distinct titles, and
    one matplotlib text per tile took most of the time of a run's pictures.
    The result is read-only (it is shared through the cache).
    """
    figure = Figure(figsize=(0.1 * len(text) + 0.5, 0.4), dpi=80)
    figure.patch.set_alpha(0)
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, fontweight="bold" if red else "normal")
    figure.canvas.draw()
    coverage = np.asarray(figure.canvas.buffer_rgba())[..., 3] / 255.0
    rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
    coverage = coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] if rows.size else coverage[:1, :1] * 0
    coverage = np.stack([coverage * float(not red), coverage, coverage], axis=-1)
    coverage.flags.writeable = False
    return coverage


def _stamp(canvas, ink, center, bottom):
    """Darkens `canvas` (float RGB) by `ink` (`_text_bitmap`), centred at column `center`, above row `bottom`.

    The ink is clipped to the canvas.
    """
    h, w = ink.shape[:2]
    top, left = int(round(bottom)) - h, int(round(center - w / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] -= canvas[y0:y1, x0:x1] * ink[y0 - top:y1 - top, x0 - left:x1 - left]


def color_masks(labels, num_classes):
    """Paints integer label maps `(n, h, w)` in a fixed palette: float `(n, h, w, 3)` in [0, 1].

    Class `c` gets a distinct colour (hues spread over the classes, alternating
    brightness); labels outside `0..num_classes-1` (ignored pixels) are black.

    Example:
    >>> color_masks(np.argmax(teacher(images), axis=-1), 11).shape
    (64, 128, 128, 3)
    """
    hues = np.arange(num_classes) / max(num_classes, 1)
    values = np.where(np.arange(num_classes) % 2, 0.65, 1.0)
    palette = matplotlib.colors.hsv_to_rgb(np.stack([hues, np.full(num_classes, 0.8), values], axis=-1))
    palette = np.concatenate([palette, np.zeros((1, 3))]).astype("float32")
    labels = np.asarray(labels)
    return palette[np.where((labels >= 0) & (labels < num_classes), labels, num_classes)]


def side_by_side(images, *masks, num_classes):
    """Each image followed by its coloured masks, as one wider image: `(n, h, w * (1 + len(masks)), 3)`."""
    return np.concatenate([_common_scale(images), *(color_masks(m, num_classes) for m in masks)], axis=2)


class GeneratedImages(keras.callbacks.Callback):
    """Each epoch, draws generated samples from fixed noise to TensorBoard and PNG.

    One common scale for the grid; each sample titled with the teacher's
    class, in red with the student's where the two disagree
    (`labelled_grid`). For a segmentation teacher each sample is drawn beside
    the mask the teacher predicts on it (the paper's Fig. 6). TensorBoard's
    step is the distiller's DFAD iteration.

    Args:
        log_dir: TensorBoard directory; images go to its `samples` subfolder.
        image_dir: folder for `epoch_NNN.png` files (None for none).
        num_images: images in the grid.
        seed: seed of the fixed noise.
        class_names: names of the teacher's classes (default: their numbers).

    Example:
    >>> distiller.fit(batch_size=256, callbacks=[GeneratedImages("runs/x/logs", "runs/x/samples")])
    """

    def __init__(self, log_dir, image_dir=None, num_images=64, seed=0, class_names=None):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))
        self.image_dir = image_dir
        self.num_images = num_images
        self.seed = seed
        self.class_names = class_names
        self._classified = _CompiledPerModels(_classified)

    def on_epoch_end(self, epoch, logs=None):
        distiller = self.model
        generator, teacher = distiller.generator, distiller.teacher
        latents = _fixed_latents(self.num_images, generator.input_shape[-1], self.seed)
        if len(teacher.output_shape) == 4:
            images, masks = (np.asarray(value) for value in self._classified((generator, teacher), latents))
            grid = image_grid(side_by_side(images, masks, num_classes=teacher.output_shape[-1]), rescale=False)
        else:
            images, teacher_classes, student_classes = (np.asarray(value) for value in self._classified(
                (generator, teacher, distiller.kept_student()), latents))
            grid = labelled_grid(images, teacher_classes, student_classes, self.class_names)
        _write_picture(self.writer, "generated_samples", grid, int(distiller.iteration.numpy()),
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
        student = np.argmax(distiller.kept_student()(self.images, training=False), axis=-1)
        rows = side_by_side(self.images, self.labels, teacher, student,
                            num_classes=distiller.teacher.output_shape[-1])
        _write_picture(self.writer, "real_images_truth_teacher_student", image_grid(rows, rescale=False),
                       int(distiller.iteration.numpy()),
                       self.image_dir and os.path.join(self.image_dir, f"real_epoch_{epoch + 1:03d}.png"))


def _write_picture(writer, name, picture, step, png_path=None):
    with writer.as_default():
        tf.summary.image(name, picture[None], step=step)
    writer.flush()
    if png_path:
        with fileio.atomic_path(png_path) as tmp:
            tf.io.write_file(tmp, tf.io.encode_png(picture))


class IterationScalars(keras.callbacks.Callback):
    """Writes each epoch's logs to TensorBoard, at the step of the DFAD iteration reached.

    Keras's TensorBoard callback counts epochs for its epoch scalars and
    student optimizer steps (k per iteration) for others; here every scalar,
    like every picture of `GeneratedImages`, is at the distiller's
    `iteration`. Training values go to `log_dir/train`, `val_*` ones to
    `log_dir/validation` (without the prefix), so TensorBoard overlays them.

    Args:
        log_dir: TensorBoard directory.

    Example:
    >>> distiller.fit(batch_size=256, callbacks=[GeneratedAgreement(), IterationScalars("runs/x/logs")])
    """

    def __init__(self, log_dir):
        super().__init__()
        self.writers = {split: tf.summary.create_file_writer(os.path.join(log_dir, split))
                        for split in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.iteration.numpy())
        for name, value in (logs or {}).items():
            split, tag = ("validation", name[len("val_"):]) if name.startswith("val_") else ("train", name)
            with self.writers[split].as_default():
                tf.summary.scalar(tag, float(np.asarray(value)), step=step)
        for writer in self.writers.values():
            writer.flush()


class TrainingCurves(keras.callbacks.Callback):
    """Draws a run's curves per epoch into one PNG, refreshed as the run goes and complete at its end.

    Three panels: held-out accuracy or mean IoU (`val_accuracy`/`val_miou`)
    with `gen_agreement`; the student's loss `loss_S` (and `val_loss_S`, on
    real images); the generator's loss `loss_G` (none for a fixed generator).
    It reads the history CSV that `HistoryCSV` writes (put this callback after
    it), so a resumed run's picture shows its earlier epochs too. Drawn after
    the first epoch, then after an epoch only once `refresh_seconds` have
    passed since the last drawing, and after the last epoch: drawing took
    0.16 to 0.27 s, 2 to 3 % of an epoch of the README's main job.
    Written atomically.

    Args:
        history_csv: the `HistoryCSV` file.
        png_path: the picture to write, e.g. `curves.png`.
        iterations_per_epoch: DFAD iterations per epoch, for the axis label.
        refresh_seconds: the least time between two drawings during training
            (0: after every epoch).

    Example:
    >>> callbacks = [HistoryCSV("runs/x/history.csv"), TrainingCurves("runs/x/history.csv", "runs/x/curves.png")]
    """

    def __init__(self, history_csv, png_path, iterations_per_epoch=None, refresh_seconds=30.0):
        super().__init__()
        self.history_csv = history_csv
        self.png_path = png_path
        self.iterations_per_epoch = iterations_per_epoch
        self.refresh_seconds = refresh_seconds
        self._drawn_at, self._behind = None, False

    def on_epoch_end(self, epoch, logs=None):
        self._behind = True
        if self._drawn_at is None or time.monotonic() - self._drawn_at >= self.refresh_seconds:
            self._draw()

    def on_train_end(self, logs=None):
        if self._behind:
            self._draw()

    def _draw(self):
        self._drawn_at, self._behind = time.monotonic(), False
        rows = fileio.read_csv(self.history_csv)
        epochs = [int(row["epoch"]) + 1 for row in rows]

        def column(name):
            if not rows or name not in rows[0]:
                return None
            return [_number(row[name]) for row in rows]

        figure = Figure(figsize=(12, 3.6), dpi=80)
        FigureCanvasAgg(figure)
        panels = figure.subplots(1, 3)
        titles = ("student: held-out score (val_), agreement on generated", "student loss", "generator loss")
        for ax, title, names in zip(panels, titles,
                                    (("val_accuracy", "val_miou", "gen_agreement"), ("loss_S", "val_loss_S"),
                                     ("loss_G",))):
            for name in names:
                values = column(name)
                if values is not None:
                    ax.plot(epochs, values, marker="o", markersize=3, label=name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch" + (f" ({self.iterations_per_epoch} DFAD iterations each)"
                                     if self.iterations_per_epoch else ""), fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes)
        panels[0].set_ylim(0, 1)
        # Fixed margins that fit these labels: tight_layout drew the figure twice, most of this callback's time.
        figure.subplots_adjust(left=0.045, right=0.99, bottom=0.14, top=0.92, wspace=0.22)
        with fileio.atomic_path(self.png_path) as tmp:
            figure.savefig(tmp, format="png")


def _number(text):
    """A CSV cell as a float; NaN for an empty or non-numeric one (CSVLogger writes "NA" for a missing value)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return np.nan


class GeneratedAgreement(keras.callbacks.Callback):
    """Adds `gen_agreement` to the epoch logs: a model-selection signal without data.

    The fraction of a fixed bank of generated images (fixed noise through the
    current generator, in inference mode) on which the top-1 class of the
    student the distiller keeps (`kept_student`) equals the teacher's (for
    segmentation, the fraction of their pixels). The
    generator is trained to find images where the two disagree, so a student
    that agrees on them has caught up with the hardest samples the run can
    make. Outputs that are not finite (NaN, inf) never count as agreeing.
    Put this callback before any that reads it.

    Args:
        num_samples: size of the noise bank (1,024: the agreement of a
            bank that size is known to about +- 1.6 points, and it costs
            0.13 s an epoch in the README's main job, where twice as many
            cost 0.25 s).
        seed: seed of the noise bank.
        batch_size: images per forward pass.

    Example:
    >>> callbacks = [GeneratedAgreement(), BestStudentCheckpoint("student.keras", "gen_agreement")]
    """

    def __init__(self, num_samples=1024, seed=1, batch_size=512):
        super().__init__()
        self.num_samples = num_samples
        self.seed = seed
        self.batch_size = batch_size
        self._agreeing = _CompiledPerModels(_agreeing)

    def on_epoch_end(self, epoch, logs=None):
        distiller = self.model
        models = (distiller.generator, distiller.teacher, distiller.kept_student())
        latents = _fixed_latents(self.num_samples, distiller.generator.input_shape[-1], self.seed)
        agree = sum(float(self._agreeing(models, latents[start:start + self.batch_size]))
                    for start in range(0, self.num_samples, self.batch_size))
        if logs is not None:
            logs["gen_agreement"] = agree / self.num_samples


class RunImagesAgreement(keras.callbacks.Callback):
    """Adds `run_agreement` and `run_choice` to the epoch logs: a label-free choice of the student.

    After each epoch, `per_epoch` images of the current generator (inference
    mode, fresh noise) join a bank of the run's generated images: a uniform
    sample of all the images added so far, at most `capacity` (reservoir
    sampling). `run_agreement` is the fraction of the bank on which the top-1
    class of the student the distiller keeps (`kept_student`) equals the
    teacher's (for segmentation, the fraction of pixels). The student chosen so
    far is scored on the same bank; the current one replaces it when it agrees
    at least as well, and `run_choice` is the chosen student's epoch (1-based).
    So `run_choice` grows exactly when the current student wins:
    `BestStudentCheckpoint(monitor="run_choice")` saves the chosen student.

    Why the whole run's images: each epoch's generator shows the student what
    it gets wrong now, so agreement on the current images (`gen_agreement`)
    favours a student that has just caught up there, whatever it forgot
    elsewhere; agreement on everything the run has shown asks for both
    (README "Recipes": on seventeen teacher-panel runs this choice was 3.3
    points below the best epoch by labels on average, the last epoch 6.6 and
    the best `gen_agreement` 3.7, which fell up to 8.7 points below the last
    epoch where this choice never fell more than 0.4).

    Its state (the bank and the chosen student's weights) is saved and
    restored by `TrainingBackup(..., states=[this])`, so a resumed run chooses
    as the uninterrupted one would.

    Args:
        per_epoch: images added after each epoch.
        capacity: most images the bank holds (8,192 digits of 32x32 take
            32 MB, saved with every backup).
        seed: seed of the noise and of the reservoir's draws.
        batch_size: images per forward pass.

    Example:
    >>> choice = RunImagesAgreement()
    >>> callbacks = [choice, BestStudentCheckpoint("student.keras", "run_choice"),
    ...              TrainingBackup("backup", states=[choice])]
    """

    name = "run_images_agreement"

    def __init__(self, per_epoch=256, capacity=8192, seed=0, batch_size=512):
        super().__init__()
        if capacity < 1 or per_epoch < 1:
            raise ValueError(f"per_epoch ({per_epoch}) and capacity ({capacity}) must be positive")
        self.per_epoch = per_epoch
        self.capacity = capacity
        self.seed = seed
        self.batch_size = batch_size
        self._teacher_classes = _CompiledPerModels(_teacher_classes)
        # One compiled function per student: alternating models in one would retrace at every call.
        self._current_agreement = _CompiledPerModels(_agreement_per_image)
        self._chosen_agreement = _CompiledPerModels(_agreement_per_image)
        self.restore_state(None)

    def on_train_begin(self, logs=None):
        self.restore_state(None)  # TrainingBackup, the last callback, restores a resumed run's state after this

    def state(self):
        """The bank and the chosen student, as named numpy arrays (what `TrainingBackup` saves)."""
        return {"images": self.images, "teacher_classes": self.teacher_classes,
                "chosen_agreement": self.chosen_agreement, "count": np.int64(self.count),
                "chosen_epoch": np.int64(self.chosen_epoch),
                **{f"chosen_weight_{i}": weight for i, weight in enumerate(self.chosen_weights or [])}}

    def restore_state(self, state):
        """Takes back what `state` returned; None empties the bank and forgets the chosen student."""
        state = state or {}
        self.images, self.teacher_classes = state.get("images"), state.get("teacher_classes")
        self.chosen_agreement = state.get("chosen_agreement")
        self.count, self.chosen_epoch = int(state.get("count", 0)), int(state.get("chosen_epoch", 0))
        weights = sorted((key for key in state if key.startswith("chosen_weight_")),
                         key=lambda key: int(key.rsplit("_", 1)[1]))
        self.chosen_weights = [np.asarray(state[key]) for key in weights] or None
        self._chosen = None

    def on_epoch_end(self, epoch, logs=None):
        distiller = self.model
        student = distiller.kept_student()
        latents = np.random.default_rng([self.seed, epoch]).standard_normal(
            (self.per_epoch, distiller.generator.input_shape[-1])).astype("float32")
        slots = self._add(*self._batched(self._teacher_classes, (distiller.generator, distiller.teacher), latents))
        current = self._agreement_with(self._current_agreement, student, slice(None))
        if self.chosen_weights is not None:
            self.chosen_agreement[slots] = self._agreement_with(self._chosen_agreement,
                                                                self._chosen_student(student), slots)
        if self.chosen_weights is None or current.mean() >= self.chosen_agreement.mean():
            self.chosen_weights = student.get_weights()
            self.chosen_agreement, self.chosen_epoch = current, epoch + 1
            if self._chosen is not None:
                self._chosen.set_weights(self.chosen_weights)
        if logs is not None:
            logs["run_agreement"] = float(current.mean())
            logs["run_choice"] = self.chosen_epoch

    def _add(self, images, teacher_classes):
        """Offers the images to the bank; returns the slots they took."""
        number = self.count + np.arange(len(images))  # of each image among all offered, from 0
        drawn = np.random.default_rng([self.seed, self.count, 1]).integers(0, number + 1)
        slots = np.where(number < self.capacity, number, drawn)
        # Kept with probability capacity / (number + 1); of two images drawing one slot the later stays.
        kept = np.flatnonzero(slots < self.capacity)
        kept = kept[len(kept) - 1 - np.unique(slots[kept][::-1], return_index=True)[1]]
        size = min(self.count + len(images), self.capacity)

        def grown(array, like):  # `array` (None: empty) with zero rows shaped like `like`'s up to `size`
            array = like[:0] if array is None else array
            return np.concatenate([array, np.zeros((size - len(array), *like.shape[1:]), like.dtype)])

        self.images, self.teacher_classes = grown(self.images, images), grown(self.teacher_classes, teacher_classes)
        self.chosen_agreement = grown(self.chosen_agreement, np.zeros(0, "float32"))
        self.images[slots[kept]], self.teacher_classes[slots[kept]] = images[kept], teacher_classes[kept]
        self.count += len(images)
        return slots[kept]

    def _agreement_with(self, function, student, slots):
        return self._batched(function, (student,), self.images[slots], self.teacher_classes[slots])[0]

    def _chosen_student(self, like):
        """The chosen student: a copy of `like` made once, holding the chosen weights."""
        if self._chosen is None:
            self._chosen = keras.models.clone_model(like)
            self._chosen.set_weights(self.chosen_weights)
        return self._chosen

    def _batched(self, function, models, *arrays):
        """`function(models, ...)` over batches of `arrays`, its outputs concatenated as numpy arrays."""
        outputs = [function(models, *(array[start:start + self.batch_size] for array in arrays))
                   for start in range(0, len(arrays[0]), self.batch_size)]
        return [np.concatenate([np.asarray(output[i]) for output in outputs]) for i in range(len(outputs[0]))]


class _CompiledPerModels:
    """`function(*models, *arrays)` compiled once per set of models (eagerly it cost seconds an epoch)."""

    def __init__(self, function):
        self.function = function
        self.models, self.compiled = None, None

    def __call__(self, models, *arrays):
        if self.models != models:
            self.models = models
            self.compiled = tf.function(functools.partial(self.function, *models), reduce_retracing=True)
        return self.compiled(*(tf.constant(array) for array in arrays))


def _classified(generator, *classifiers_and_latents):
    """The images from the latents (the last argument) and the classes each classifier gives them (per pixel)."""
    *classifiers, latents = classifiers_and_latents
    images = generator(latents, training=False)
    return (images, *(tf.argmax(classifier(images, training=False), axis=-1) for classifier in classifiers))


def _agreement_per_image(student, images, teacher_classes):
    """The fraction of each image's pixels (1 or 0 for a classifier) where the student gives the teacher's class."""
    outputs = student(images, training=False)
    # argmax reads a NaN as the largest value: outputs that are not all finite never agree.
    same = tf.reduce_all(tf.math.is_finite(outputs), axis=-1) & (tf.argmax(outputs, axis=-1) == teacher_classes)
    return (tf.reduce_mean(tf.reshape(tf.cast(same, "float32"), [tf.shape(images)[0], -1]), axis=1),)


def _teacher_classes(generator, teacher, latents):
    """The images from `latents` and the teacher's class for each (per pixel for masks).

    A teacher's output that is not all finite gives no class (-1), so that no
    student agrees with it.
    """
    images = generator(latents, training=False)
    outputs = teacher(images, training=False)
    return images, tf.where(tf.reduce_all(tf.math.is_finite(outputs), axis=-1), tf.argmax(outputs, axis=-1),
                            tf.constant(-1, tf.int64))


def _agreeing(generator, teacher, student, latents):
    """How many of the images from `latents` teacher and student give the same class (pixel fractions for masks)."""
    return tf.reduce_sum(_agreement_per_image(student, *_teacher_classes(generator, teacher, latents))[0])


class DivergedError(RuntimeError):
    """A DFAD run diverged or produced NaN; `model` says which model did.

    Attributes:
        model: "teacher" (its outputs on finite generated images are not
            finite) or "student" (training diverged: the student's loss is
            not finite or exploded while the teacher's outputs are finite).
        iteration: the DFAD iteration after which the losses were checked.
        reason: what was seen, e.g. "NaN or infinite loss".
    """

    def __init__(self, model, iteration, reason):
        advice = {"teacher": "the teacher's outputs on generated images are not finite; check its input convention",
                  "student": "the student diverged; lower its learning rate"}[model]
        super().__init__(f"{reason} at DFAD iteration {iteration}: {advice}")
        self.model, self.iteration, self.reason = model, iteration, reason


class StopOnDivergence(keras.callbacks.Callback):
    """Stops a DFAD run at the first NaN, infinite or exploded loss, naming the model that produced it.

    Checks `loss_S` and `loss_G` after every iteration and raises
    `DivergedError` at once, so nothing after the last good epoch is saved
    (the best student on disk stays). A loss counts as exploded when `loss_S`
    exceeds `factor` times the teacher's typical output size (its mean
    absolute output on generated images at the start): a student that far
    from the teacher has diverged, and goes on to overflow or to output
    constants. To tell which model went wrong it keeps the generator's
    weights of the start of the epoch and, after a failure, feeds the teacher
    images of a fixed noise bank through that generator and through the
    current one (in training mode, as in the run, on a copy): outputs that are
    not finite on finite images make the teacher the cause (typically a wrong
    input convention), else the student (training diverged, typically a
    student learning rate too high; a diverging generator makes the student's
    loss diverge at the next iteration and looks the same).

    Args:
        factor: how many times the teacher's output size `loss_S` may reach.
        num_samples: size of the fixed noise bank.
        seed: seed of that bank.

    Example:
    >>> distiller.fit(batch_size=256, callbacks=[StopOnDivergence(), ...])  # raises DivergedError
    """

    def __init__(self, factor=1e3, num_samples=1024, seed=2):
        super().__init__()
        self.factor = factor
        self.num_samples = num_samples
        self.seed = seed

    def on_train_begin(self, logs=None):
        distiller = self.model
        images = distiller.generator(_fixed_latents(256, distiller.latent_dim, self.seed), training=False)
        outputs = np.abs(np.asarray(distiller.teacher(images, training=False), "float32"))
        self.max_loss = self.factor * max(float(np.nanmean(outputs)) if np.isfinite(outputs).any() else 0.0, 1.0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_generator = self.model.generator.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        values = {name: float(np.asarray(logs[name])) for name in ("loss_S", "loss_G") if name in logs}
        exploded = values.get("loss_S", 0.0) > self.max_loss
        if all(np.isfinite(list(values.values()))) and not exploded:
            return
        iteration = int(self.model.iteration.numpy())
        if self._teacher_fails():
            raise DivergedError("teacher", iteration, "NaN or infinite loss")
        raise DivergedError("student", iteration, f"loss_S = {values['loss_S']:.3g}, over {self.max_loss:.3g}"
                            if exploded else "NaN or infinite loss")

    def _teacher_fails(self):
        distiller = self.model
        latents = _fixed_latents(self.num_samples, distiller.latent_dim, self.seed)
        copy = keras.models.clone_model(distiller.generator)
        for weights in (self._epoch_generator, distiller.generator.get_weights()):
            copy.set_weights(weights)
            for start in range(0, self.num_samples, 256):
                images = np.asarray(copy(latents[start:start + 256], training=True))
                if np.isfinite(images).all() and not np.isfinite(
                        np.asarray(distiller.teacher(images, training=False))).all():
                    return True
        return False


class BestStudentCheckpoint(keras.callbacks.Callback):
    """Saves the student whenever `monitor` reaches a new best, never a worse one.

    The student saved is the one the distiller keeps (`kept_student`: the
    average of its weights when the run averages them).

    The best value is kept in a JSON file beside the model, so a resumed or a
    repeated run in the same place only replaces the student when it beats the
    one already on disk.

    Args:
        filepath: where the student is saved (`.keras`).
        monitor: log key to maximise, e.g. "val_accuracy", or "run_choice"
            (`RunImagesAgreement`'s choice, what a run without labelled
            data keeps).
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
                precision.float32_copy(self.model.kept_student()).save(tmp)
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
        states: callbacks whose own state is backed up in the same file:
            each has a unique `name`, `state()` returning a dict of numpy
            arrays and `restore_state(dict)` (e.g. `RunImagesAgreement`).

    Example:
    >>> distiller.fit(batch_size=256, epochs=40, callbacks=[..., TrainingBackup("runs/x/backup")])
    """

    def __init__(self, backup_dir, write=True, states=()):
        super().__init__()
        self.backup_dir = backup_dir
        self.path = os.path.join(backup_dir, "state.weights.h5")
        self.write = write
        self.states = list(states)

    @property
    def exists(self):
        """Whether there is a backup to resume from."""
        return fileio.exists(self.path)

    def on_train_begin(self, logs=None):
        if not self.exists:
            return
        self.model.load_weights(self.path)  # reads only the model's groups, not the callbacks' below
        with tf.io.gfile.GFile(self.path, "rb") as file, h5py.File(file, "r") as backup:
            for callback in self.states:
                group = backup.get(f"{CALLBACK_STATES}/{callback.name}")
                callback.restore_state(None if group is None else {key: group[key][()] for key in group})
        iterations, steps = int(self.model.iteration.numpy()), self.params["steps"]
        if iterations % steps:
            raise ValueError(f"{self.path} holds {iterations} iterations, not whole epochs of {steps}: "
                             "resume with the --iterations_per_epoch of the interrupted run")
        self.model._initial_epoch = iterations // steps  # as BackupAndRestore does: Keras has no public hook

    def on_epoch_end(self, epoch, logs=None):
        if self.write:
            with fileio.atomic_path(self.path) as tmp:
                self.model.save_weights(tmp)
                with h5py.File(tmp, "a") as backup:
                    for callback in self.states:
                        group = backup.create_group(f"{CALLBACK_STATES}/{callback.name}")
                        for key, value in callback.state().items():
                            group[key] = value

    def on_train_end(self, logs=None):
        if self.write:
            fileio.remove_tree(self.backup_dir)


class HistoryCSV(keras.callbacks.Callback):
    """`keras.callbacks.CSVLogger`'s file, rewritten whole and atomically after each epoch.

    CSVLogger appends to an open file, which gs:// cannot do and a kill can
    leave half-written; this works on any filesystem `fileio` does. A `seconds`
    column holds the wall time from the start of training to each epoch's end,
    counting the time of the runs before a resume.

    Args:
        path: the CSV file: an `epoch` column, then the logs' keys and `seconds`.
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
        earlier = _number(self.rows[-1].get("seconds")) if self.rows else 0.0
        self.started = time.time() - (0.0 if np.isnan(earlier) else earlier)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **(logs or {}), "seconds": round(time.time() - self.started, 1)})
        keys = ["epoch"] + sorted({key for row in self.rows for key in row} - {"epoch"})
        with fileio.atomic_path(self.path) as tmp, open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, keys, restval="NA")
            writer.writeheader()
            writer.writerows(self.rows)
