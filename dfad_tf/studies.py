"""The paper's experiments as a function: methods x seeds of one distillation configuration.

Every run (a "cell": one method or variant, one seed) distils the same teacher
into a fresh student and records its best held-out accuracy (mean IoU for a
segmentation dataset) over the epochs; each row of the table is the mean +-
standard deviation over seeds, as in the paper's Table 2. A cell is the base
`DistillConfig` with what the method changes (`dataclasses.replace`); see
`reproduce` and `dfad-reproduce --help` for the methods and studies.

Example:
```python
from dfad_tf import config, studies

base = config.DistillConfig(model_dir="runs/table", schedule=config.ScheduleConfig(epochs=5))
table = studies.reproduce(base, methods=("teacher", "random", "dfad"), seeds=2)
```
"""

import csv
import dataclasses
import io
import os

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dfad_tf import baselines, config, conventions, data, evaluation, fileio, losses, models, objectives, run
from dfad_tf.config import ConfigError
from dfad_tf.data import alternatives
from dfad_tf.data.tfds_sources import DatasetUnavailableError

KD_METHODS = ("kd_ori", "kd_rel", "kd_unr", "random")
GENERATOR_METHODS = ("dafl", "dfad", "dfad_bn")  # the paper's recipe with these generator objectives
METHODS = ("teacher", *KD_METHODS, *GENERATOR_METHODS, "robust")
PAPER = {"objective.recipe": "paper"}
STUDIES = ("table", "loss", "batch_size", "fixed_generator")


@dataclasses.dataclass(frozen=True)
class KDConfig:
    """The KD baselines' data and temperature.

    Args:
        related_data: images of kd_rel: a stand-in of `data.alternatives` or a dataset of `data.SOURCES`
            with the same image shape (labels unused).
        unrelated_data: images of kd_unr, likewise.
        temperature: softmax temperature.
    """

    related_data: str = "printed_digits"
    unrelated_data: str = "photo_patches"
    temperature: float = 4.0


def reproduce(base, study="table", methods=METHODS, seeds=5, batch_sizes=(32, 64, 128, 256), kd=KDConfig(),
              verbose=2):
    """Runs every cell of `study` in `base.model_dir`; skips cells that finished before.

    Args:
        base: the `DistillConfig` of every cell; its model_dir is the study's folder, and its teacher
            (trained there first if `teacher.path` is None) is every cell's.
        study: table (the `methods`), loss (DFAD with each discrepancy), batch_size (DFAD at each of
            `batch_sizes`) or fixed_generator (a fresh student on each seed's DFAD generator, frozen).
        methods: of the table study, from `METHODS`.
        seeds: runs per method (seeds 0..seeds-1).
        batch_sizes: of the batch_size study.
        kd: the KD baselines' `KDConfig`.
        verbose: Keras's fit verbosity.

    Returns:
        The markdown table, as written to MODEL_DIR/STUDY.md (and STUDY.csv, STUDY.png for loss and batch_size).
    """
    if study not in STUDIES:
        raise ConfigError("study", f"unknown study {study!r}; choose one of: {', '.join(STUDIES)}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ConfigError("methods", f"choose from: {', '.join(METHODS)}")
    model_dir = base.model_dir
    spec = data.spec(base.data.dataset)
    metric = evaluation.metric_name(spec)
    input_map = run.teacher_input_map(base.teacher, spec)
    images, labels = evaluation.arrays(run.labelled_dataset(base.data, "test"))
    test_data = (conventions.adapt_images(images, *input_map), labels)
    teacher_path = base.teacher.path or os.path.join(model_dir, run.TEACHER_FILE)
    if not fileio.exists(teacher_path):
        run.train_teacher(config.TeacherConfig(model_dir, base.data, base.teacher.training, base.seed),
                          verbose=verbose)
    teacher = run.load_model(teacher_path, base.teacher.allow_unsafe)
    base = config.replace(base, "teacher.path", teacher_path)

    results = {}
    for variant, seed, overrides in _cells(study, methods, seeds, batch_sizes, model_dir):
        cell_dir = _cell_dir(model_dir, study, variant, seed)
        record_path = os.path.join(cell_dir, "cell.json")
        record = fileio.read_json(record_path, None)
        if record is None:
            print(f"Running {variant}, seed {seed} in {cell_dir}")
            if variant == "teacher":
                curve = [evaluation.model_score(teacher, *test_data, spec)]
            elif variant in KD_METHODS:
                curve = _kd_cell(base, variant, seed, teacher, test_data, spec, input_map, kd, verbose)
            else:
                if variant in GENERATOR_METHODS:
                    overrides = {**PAPER, "objective.generator_loss_weights": objectives.METHOD_WEIGHTS[variant],
                                 **overrides}
                elif variant == "robust":  # whatever recipe the base configuration has
                    overrides = {"objective.recipe": "robust", **overrides}
                cell = dataclasses.replace(base, model_dir=cell_dir, seed=seed,
                                           export=dataclasses.replace(base.export, formats=()))
                for field, value in overrides.items():
                    cell = config.replace(cell, field, value)
                run.distill(cell, verbose=verbose)
                history = fileio.read_csv(os.path.join(cell_dir, run.HISTORY_FILE))
                curve = [float(row[f"val_{metric}"]) for row in history]
            record = {"method": variant, "seed": seed, f"best_{metric}": max(curve), f"val_{metric}": curve}
            fileio.write_json(record_path, record)
            keras.backend.clear_session()
        else:
            print(f"Skipping {variant}, seed {seed}: finished ({record[f'best_{metric}']:.4f})")
        if variant != "teacher" or seed == 0:
            results.setdefault(variant, {})[seed] = record[f"val_{metric}"]

    table, rows = _summary(results, metric)
    path = os.path.join(model_dir, study)
    for suffix, text in ((".md", table), (".csv", rows)):
        with fileio.atomic_path(path + suffix) as tmp, open(tmp, "w") as file:
            file.write(text)
    if study in ("loss", "batch_size"):
        _plot(results, path + ".png", metric, f"{base.data.dataset}: {study}")
    return table


def _cells(study, methods, seeds, batch_sizes, model_dir):
    """(variant, seed, {field: value}) of every cell of `study`."""
    seeds = range(seeds)
    if study == "table":
        # The teacher is one given model: one row, one "run".
        return [(method, seed, {}) for method in methods for seed in (seeds if method != "teacher" else [0])]
    if study == "loss":
        return [(loss, seed, {**PAPER, "objective.loss": loss}) for loss in losses.DISCREPANCIES for seed in seeds]
    if study == "batch_size":
        return [(f"batch_{size}", seed, {**PAPER, "schedule.batch_size": int(size)})
                for size in batch_sizes for seed in seeds]
    return [cell for seed in seeds for cell in (
        ("dfad", seed, PAPER),
        ("fixed_generator", seed, {**PAPER, "generator.fixed": os.path.join(
            _cell_dir(model_dir, study, "dfad", seed), run.GENERATOR_FILE)}))]


def _cell_dir(model_dir, study, variant, seed):
    study = "table" if study == "fixed_generator" and variant == "dfad" else study
    return os.path.join(model_dir, study, variant, f"seed_{seed}")


def _images(field, name, base, spec, count):
    """Unlabelled images named `name`: `count` of a stand-in, or a dataset's training split."""
    if name in alternatives.ALTERNATIVES:
        return alternatives.alternative_images(name, spec, count, seed=1)
    if name not in data.SOURCES:
        choices = ", ".join([*alternatives.ALTERNATIVES, *sorted(data.SOURCES)])
        raise ConfigError(field, f"unknown data {name!r}; choose one of: {choices}")
    if data.spec(name).image_shape != spec.image_shape:
        raise ConfigError(field, f"{name} has images of shape {data.spec(name).image_shape}, "
                                 f"the dataset {base.data.dataset} {spec.image_shape}")
    try:
        return evaluation.arrays(data.load(name, "train", data_dir=base.data.data_dir))[0]
    except DatasetUnavailableError as error:
        raise ConfigError("data.data_dir", str(error)) from error


def _kd_cell(base, method, seed, teacher, test_data, spec, input_map, kd, verbose):
    """A KD baseline run; returns the held-out metric per epoch."""
    images, labels = evaluation.arrays(run.labelled_dataset(base.data, "train"))  # stand-ins come as many
    if method == "random":
        images, labels = alternatives.alternative_images("gaussian_noise", spec, len(labels), seed=seed), None
    elif method != "kd_ori":
        field = "related_data" if method == "kd_rel" else "unrelated_data"
        images, labels = _images(field, getattr(kd, field), base, spec, len(labels)), None
    images = conventions.adapt_images(images, *input_map)  # what the teacher takes
    keras.utils.set_random_seed(seed)
    student, schedule = base.student, base.schedule
    model = models.build_model(student.model, spec.image_shape, spec.num_classes, width=student.width,
                               output_stride=student.output_stride)
    history = baselines.knowledge_distillation(
        teacher, model, images, labels, validation_data=test_data, spec=spec, epochs=schedule.epochs,
        steps_per_epoch=schedule.iterations_per_epoch * schedule.imitation_steps, batch_size=schedule.batch_size,
        learning_rate=student.learning_rate, momentum=student.momentum, temperature=kd.temperature,
        seed=seed, verbose=verbose)
    return [float(value) for value in history.history[f"val_{evaluation.metric_name(spec)}"]]


def _summary(results, metric):
    """Markdown table and CSV text of `results`: {variant: {seed: curve}}."""
    lines = [f"| method | best {metric} (mean +- std) | runs | per seed |", "| --- | --- | --- | --- |"]
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["method", "seed", f"best_{metric}", "epochs"])
    for variant, curves in results.items():
        best = [max(curve) for curve in curves.values()]
        lines.append(f"| {variant} | {np.mean(best):.3f} +- {np.std(best):.3f} | {len(best)} | "
                     f"{', '.join(f'{value:.3f}' for value in best)} |")
        for seed, curve in curves.items():
            writer.writerow([variant, seed, f"{max(curve):.4f}", len(curve)])
    return "\n".join(lines) + "\n", rows.getvalue()


def _plot(results, path, metric, title):
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for variant, curves in results.items():
        length = min(len(curve) for curve in curves.values())
        mean = np.mean([curve[:length] for curve in curves.values()], axis=0)
        axes.plot(range(1, length + 1), mean, label=variant)
    axes.set(xlabel="epoch", ylabel=f"held-out {metric}", title=title)
    axes.legend()
    figure.tight_layout()
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
