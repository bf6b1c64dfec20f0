"""Reproduce the paper's experiments: methods x seeds with the paper's protocol.

Every run (a "cell": one method or variant, one seed) distils the same teacher
into a fresh student and records its best held-out accuracy (mean IoU for a
segmentation dataset) over the epochs;
each row of the table is the mean +- standard deviation over seeds, as in the
paper's Table 2. All distillation flags (--flagfile=flags/digits.cfg, ...)
configure the runs; methods only change what they must:

  teacher   the teacher itself (one model, trained once in MODEL_DIR if
            --teacher is not given)
  kd_ori    Hinton KD on the labelled training split
  kd_rel    KD on unlabelled related images (--related_data)
  kd_unr    KD on unlabelled unrelated images (--unrelated_data)
  random    KD on Gaussian-noise images
  dafl      a generator with DAFL's one-hot, activation and balance terms
  dfad      data-free adversarial distillation as published (--recipe=paper)
  dfad_bn   DFAD with a BatchNorm-statistics prior (needs a teacher with BN)
  robust    dfad_tf's default recipe (--recipe=robust, README "Recipes")

KD runs take as many student updates as a DFAD run (epochs x
iterations_per_epoch x imitation_steps) at the same batch size and learning rate.

Studies: --study=table (the methods), loss (DFAD with each discrepancy, paper
Fig. 4), batch_size (DFAD at each of --batch_sizes, Fig. 7), fixed_generator
(a fresh student on the frozen generator of each seed's DFAD run, against
that run). Each writes MODEL_DIR/STUDY.md (table), STUDY.csv (one row per
cell) and, for loss and batch_size, STUDY.png (mean held-out accuracy per
epoch). A finished cell leaves cell.json and is skipped when the same command
runs again; an unfinished one resumes from its last epoch.

Example:
  dfad-reproduce --flagfile=flags/digits.cfg --model_dir=runs/table --seeds=3 \\
      --methods=teacher,kd_ori,kd_rel,kd_unr,random,dafl,dfad
"""

import csv
import io
import os

import numpy as np
from absl import flags
from absl.testing import flagsaver

from dfad_tf.cli import common, distill, train_teacher
from dfad_tf.data import alternatives

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)  # --help lists the shared and the distillation flags too
flags.adopt_module_key_flags(distill)

KD_METHODS = ("kd_ori", "kd_rel", "kd_unr", "random")
GENERATOR_METHODS = ("dafl", "dfad", "dfad_bn")  # the paper's recipe with these generator objectives
METHODS = ("teacher", *KD_METHODS, *GENERATOR_METHODS, "robust")
STUDIES = ("table", "loss", "batch_size", "fixed_generator")

flags.DEFINE_list("methods", list(METHODS), f"Methods of --study=table, from: {', '.join(METHODS)}.")
flags.DEFINE_integer("seeds", 5, "Runs per method (seeds 0..N-1; the paper uses 5).", lower_bound=1)
flags.DEFINE_enum("study", "table", STUDIES,
                  "table: the methods; loss: DFAD with each discrepancy (paper Fig. 4); batch_size: DFAD at each "
                  "of --batch_sizes (Fig. 7); fixed_generator: a fresh student on each DFAD run's frozen generator.")
flags.DEFINE_list("batch_sizes", ["32", "64", "128", "256"], "Batch sizes of --study=batch_size.")
flags.DEFINE_string("related_data", "printed_digits",
                    "Images for kd_rel: a stand-in of data.alternatives (printed_digits, photo_patches) or a "
                    "dataset of --dataset's choices with the same image shape (labels unused).")
flags.DEFINE_string("unrelated_data", "photo_patches", "Images for kd_unr, as for --related_data.")
flags.DEFINE_float("kd_temperature", 4.0, "Softmax temperature of the KD baselines.")

flags.register_validator("methods", lambda names: bool(names) and set(names) <= set(METHODS),
                         message=f"--methods must be a comma-separated list of: {', '.join(METHODS)}")
flags.register_validator("batch_sizes", lambda values: bool(values) and all(v.isdigit() and int(v) > 0 for v in values),
                         message="--batch_sizes must be a comma-separated list of positive integers, e.g. 64,128,256")
common.require_positive("kd_temperature")


def _cells():
    """(variant, seed, flag overrides) of every cell of --study."""
    seeds = range(FLAGS.seeds)
    if FLAGS.study == "table":
        # The teacher is one given model: one row, one "run".
        return [(method, seed, {}) for method in FLAGS.methods for seed in (seeds if method != "teacher" else [0])]
    if FLAGS.study == "loss":
        from dfad_tf import losses

        return [(loss, seed, {"loss": loss, "recipe": "paper"}) for loss in losses.DISCREPANCIES for seed in seeds]
    if FLAGS.study == "batch_size":
        return [(f"batch_{size}", seed, {"batch_size": int(size), "recipe": "paper"})
                for size in FLAGS.batch_sizes for seed in seeds]
    return [cell for seed in seeds for cell in (
        ("dfad", seed, {"recipe": "paper"}),
        ("fixed_generator", seed, {"recipe": "paper",
                                   "fixed_generator": os.path.join(_cell_dir("dfad", seed), "generator.keras")}))]


def _cell_dir(variant, seed):
    study = "table" if FLAGS.study == "fixed_generator" and variant == "dfad" else FLAGS.study
    return os.path.join(FLAGS.model_dir, study, variant, f"seed_{seed}")


def _metric():
    """What --dataset's students are measured by: "accuracy", or "miou" for segmentation."""
    from dfad_tf import data, evaluation

    return evaluation.metric_name(data.spec(FLAGS.dataset))


def _distill_cell(cell_dir, seed, overrides, teacher_path):
    """A `distill` run in `cell_dir`; returns the held-out metric per epoch."""
    import tensorflow as tf

    with flagsaver.flagsaver(model_dir=cell_dir, teacher=teacher_path, seed=seed, export=[], **overrides):
        distill.main(["distill"])
    with tf.io.gfile.GFile(os.path.join(cell_dir, "history.csv")) as file:
        return [float(row[f"val_{_metric()}"]) for row in csv.DictReader(file)]


def _images(flag, spec, count):
    """Unlabelled images named by --`flag`: `count` of a stand-in, or a dataset's training split."""
    from dfad_tf import data, evaluation

    name = FLAGS[flag].value
    if name in alternatives.ALTERNATIVES:
        return alternatives.alternative_images(name, spec, count, seed=1)
    if name not in data.SOURCES:
        choices = ", ".join([*alternatives.ALTERNATIVES, *sorted(data.SOURCES)])
        raise common.FlagError(flag, f"unknown data {name!r}; choose one of: {choices}")
    if data.spec(name).image_shape != spec.image_shape:
        raise common.FlagError(flag, f"{name} has images of shape {data.spec(name).image_shape}, "
                                     f"--dataset={FLAGS.dataset} {spec.image_shape}")
    try:
        return evaluation.arrays(data.load(name, "train", data_dir=FLAGS.data_dir))[0]
    except data.tfds_sources.DatasetUnavailableError as error:
        raise common.FlagError("data_dir", str(error)) from error


def _kd_cell(method, seed, teacher, test_data):
    """A KD baseline run; returns the held-out metric per epoch."""
    import keras

    from dfad_tf import baselines, conventions, data, evaluation, models

    spec = data.spec(FLAGS.dataset)
    images, labels = evaluation.arrays(common.labelled_dataset("train"))  # stand-ins come as many
    if method == "random":
        images, labels = alternatives.alternative_images("gaussian_noise", spec, len(labels), seed=seed), None
    elif method != "kd_ori":
        images, labels = _images("related_data" if method == "kd_rel" else "unrelated_data", spec, len(labels)), None
    images = conventions.adapt_images(images, *common.teacher_input_map(spec))  # what the teacher takes
    keras.utils.set_random_seed(seed)
    student = models.build_model(FLAGS.student, spec.image_shape, spec.num_classes, width=FLAGS.student_width,
                                 output_stride=int(FLAGS.output_stride))
    history = baselines.knowledge_distillation(
        teacher, student, images, labels, validation_data=test_data, spec=spec, epochs=FLAGS.epochs,
        steps_per_epoch=FLAGS.iterations_per_epoch * FLAGS.imitation_steps, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.student_lr, momentum=FLAGS.student_momentum, temperature=FLAGS.kd_temperature,
        seed=seed, verbose=common.verbosity())
    return [float(value) for value in history.history[f"val_{evaluation.metric_name(spec)}"]]


def _summary(results):
    """Markdown table and CSV text of `results`: {variant: {seed: curve}}."""
    metric = _metric()
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


def _plot(results, path):
    import matplotlib

    from dfad_tf import fileio

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for variant, curves in results.items():
        length = min(len(curve) for curve in curves.values())
        mean = np.mean([curve[:length] for curve in curves.values()], axis=0)
        axes.plot(range(1, length + 1), mean, label=variant)
    axes.set(xlabel="epoch", ylabel=f"held-out {_metric()}", title=f"{FLAGS.dataset}: {FLAGS.study}")
    axes.legend()
    figure.tight_layout()
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    pyplot.close(figure)


def main(argv):
    del argv
    import keras

    from dfad_tf import conventions, data, evaluation, fileio, objectives

    spec, metric = data.spec(FLAGS.dataset), _metric()
    images, labels = evaluation.arrays(common.labelled_dataset("test"))
    test_data = (conventions.adapt_images(images, *common.teacher_input_map(spec)), labels)
    if FLAGS.teacher:
        teacher_path = FLAGS.teacher
    else:
        teacher_path = os.path.join(FLAGS.model_dir, "teacher.keras")
        if not fileio.exists(teacher_path):
            train_teacher.train_and_save(FLAGS.model_dir)
    teacher = common.load_teacher(teacher_path)

    results = {}
    for variant, seed, overrides in _cells():
        cell_dir = _cell_dir(variant, seed)
        record_path = os.path.join(cell_dir, "cell.json")
        record = fileio.read_json(record_path, None)
        if record is None:
            print(f"Running {variant}, seed {seed} in {cell_dir}")
            if variant == "teacher":
                curve = [evaluation.model_score(teacher, *test_data, spec)]
            elif variant in KD_METHODS:
                curve = _kd_cell(variant, seed, teacher, test_data)
            else:
                if variant in GENERATOR_METHODS:
                    weights = objectives.METHOD_WEIGHTS[variant]
                    overrides = {"recipe": "paper",
                                 "generator_loss_weights": [f"{k}={v}" for k, v in weights.items()], **overrides}
                curve = _distill_cell(cell_dir, seed, overrides, teacher_path)
            record = {"method": variant, "seed": seed, f"best_{metric}": max(curve), f"val_{metric}": curve}
            fileio.write_json(record_path, record)
            keras.backend.clear_session()
        else:
            print(f"Skipping {variant}, seed {seed}: finished ({record[f'best_{metric}']:.4f})")
        if variant != "teacher" or seed == 0:
            results.setdefault(variant, {})[seed] = record[f"val_{metric}"]

    table, rows = _summary(results)
    base = os.path.join(FLAGS.model_dir, FLAGS.study)
    for suffix, text in ((".md", table), (".csv", rows)):
        with fileio.atomic_path(base + suffix) as tmp, open(tmp, "w") as file:
            file.write(text)
    if FLAGS.study in ("loss", "batch_size"):
        _plot(results, base + ".png")
    print(table)
    print(f"Results in {base}.md and {base}.csv")


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()
