"""The recipes of the binaries, as functions of a `config`: train a teacher, distill, export, evaluate.

Each checks its configuration before it writes anything, and reports a value
that cannot work by `config.ConfigError` naming the field (the command line
turns it into a one-line error naming the flag).

Example (a whole distillation of a small digits teacher, in a few seconds):
```python
from dfad_tf import config, run

cfg = config.DistillConfig(
    model_dir="runs/api_demo",
    teacher=config.TeacherSource(training=config.TeacherTraining(epochs=2)),
    generator=config.GeneratorConfig(width=8, latent_dim=32),
    schedule=config.ScheduleConfig(batch_size=32, epochs=2, iterations_per_epoch=5),
    export=config.ExportConfig(formats=("float32",)),
)
result = run.distill(cfg)
print(result.metrics["student_accuracy"], result.student_path)
```
"""

import dataclasses
import os
import tempfile
import time

import keras
import numpy as np
from absl import logging

from dfad_tf import (
    callbacks,
    config,
    conventions,
    data,
    distribute,
    edge_report,
    evaluation,
    export as export_lib,
    fileio,
    losses,
    model_files,
    models,
    objectives,
    optimizers,
    precision,
    qat,
    recipes,
    teacher as teacher_lib,
)
from dfad_tf.config import ConfigError
from dfad_tf.data.tfds_sources import DatasetUnavailableError
from dfad_tf.distiller import DataFreeDistiller

TEACHER_FILE, STUDENT_FILE, GENERATOR_FILE = "teacher.keras", "student.keras", "generator.keras"
METRICS_FILE, HISTORY_FILE, CURVES_FILE = "metrics.json", "history.csv", "curves.png"


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `distill` leaves: the run folder, its metrics.json contents and the best student's file."""

    model_dir: str
    metrics: dict
    student_path: str


def labelled_dataset(data_config, split):
    """`data_config`'s dataset `split`; a ConfigError if there is none or tfds cannot provide it."""
    if data_config.dataset == config.NO_DATASET:
        raise ConfigError("data.dataset", f"this needs labelled data; choose one of: {', '.join(sorted(data.SOURCES))}")
    try:
        return data.load(data_config.dataset, split, data_dir=data_config.data_dir)
    except DatasetUnavailableError as error:
        raise ConfigError("data.data_dir", str(error)) from error


def teacher_input_map(teacher, spec):
    """(scale, offset) from the dataset's normalised images to the teacher's input convention."""
    statistics = dict(data_mean=spec.mean, data_std=spec.std) if spec is not None else {}
    try:
        return conventions.to_teacher_input(teacher.input, mean=teacher.input_mean, std=teacher.input_std,
                                            **statistics)
    except ValueError as error:
        raise ConfigError("teacher.input", f"{error} (input_mean, input_std)") from error


def load_model(path, allow_unsafe=False, field="teacher.path", unlock="teacher.allow_unsafe"):
    """The model file at `path` (`model_files.load_model`); a ConfigError naming `field` if it cannot be loaded.

    Args:
        unlock: the field of `allow_unsafe`, named when the file is refused as unsafe.
    """
    try:
        return model_files.load_model(path, safe_mode=not allow_unsafe)
    except model_files.ModelFileError as error:
        raise ConfigError(field, str(error), unlock=unlock if error.unsafe else None) from error


def train_teacher(teacher_config, verbose=2):
    """Trains a teacher; keeps the better of it and any already in `model_dir`.

    Args:
        teacher_config: a `config.TeacherConfig`.
        verbose: Keras's fit verbosity.

    Returns:
        `(teacher_path, score)` of the teacher now in `model_dir`, its score
        being held-out accuracy, or mean IoU for segmentation.
    """
    training, model_dir, dataset = teacher_config.training, teacher_config.model_dir, teacher_config.data.dataset
    keras.utils.set_random_seed(teacher_config.seed)
    if dataset == config.NO_DATASET:
        raise ConfigError("data.dataset", f"training a teacher needs labelled data; choose one of: "
                                          f"{', '.join(sorted(data.SOURCES))}")
    spec = data.spec(dataset)
    if models.task(training.model) != spec.task:
        raise ConfigError("training.model", f"{training.model} is a {models.task(training.model)} model but the "
                                            f"dataset {dataset} is {spec.task}")
    if training.backbone_weights and not os.path.isfile(training.backbone_weights):
        raise ConfigError("training.backbone_weights", f"{training.backbone_weights}: no such file")
    train = labelled_dataset(teacher_config.data, "train")
    test_images, test_labels = evaluation.arrays(labelled_dataset(teacher_config.data, "test"))
    recipe = {**dataclasses.asdict(training), "decay_epochs": list(training.decay_epochs),
              "seed": teacher_config.seed}
    del recipe["model"]
    print(f"Training a {training.model} teacher on {dataset} for {training.epochs} epochs")
    model, _ = teacher_lib.train_teacher(training.model, spec, train, **recipe, verbose=verbose)
    metric = evaluation.metric_name(spec)
    score = evaluation.model_score(model, test_images, test_labels, spec)
    path, metrics_path = os.path.join(model_dir, TEACHER_FILE), os.path.join(model_dir, METRICS_FILE)
    earlier = fileio.read_json(metrics_path, {})
    key = f"teacher_{metric}"
    if fileio.exists(path) and earlier.get(key, -1) >= score:
        logging.warning("kept the teacher already in %s (%s %.4f >= %.4f of this run)",
                        model_dir, metric, earlier[key], score)
        return path, earlier[key]
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    fileio.write_json(metrics_path, {
        **earlier, key: score, "teacher_config": {"dataset": dataset, "model": training.model, **recipe},
    })
    print(f"Teacher {metric} on the {dataset} test split: {score:.4f} (saved {path})")
    return path, score


def distill(run_config, verbose=2):
    """Distills the configured teacher into a student, data-free; everything `dfad-distill` does.

    Trains the teacher first if `teacher.path` is None and MODEL_DIR has none,
    checks that teacher, student and dataset fit together and warns when the
    teacher's BatchNorm layers suggest another input convention, then runs
    DFAD with the best-student checkpoint, agreement on generated images,
    TensorBoard, sample pictures and a backup that a rerun resumes from.
    Warns when the teacher does no better than chance on held-out data, and
    stops at once when the teacher's outputs or the student diverge. Leaves
    run_config.json, student.keras, student.json, generator.keras, the
    configured exports, history.csv, curves.png and metrics.json in `model_dir`
    (on any `tf.io.gfile` filesystem; made only when something is written).

    Args:
        run_config: a `config.DistillConfig`.
        verbose: Keras's fit verbosity.

    Returns:
        A `RunResult`; on a non-chief worker of a multi-worker run, its metrics are empty.

    Raises:
        ConfigError: a value that cannot work, before anything is written; or "teacher.input" or
            "student.learning_rate" for a run that diverged (the best student so far stays in `model_dir`).
    """
    model_dir = run_config.model_dir
    spec = data.spec(run_config.data.dataset) if run_config.has_data else None
    input_map = teacher_input_map(run_config.teacher, spec)
    strategy, strategy_name = _strategy(run_config)  # a multi-worker strategy precedes all TensorFlow work
    writes_files = distribute.writes_files(strategy)
    test_data = None
    if spec is not None:
        images, labels = evaluation.arrays(labelled_dataset(run_config.data, "test"))
        test_data = (conventions.adapt_images(images, *input_map), labels)
    sync_batchnorm = run_config.precision.sync_batchnorm
    if sync_batchnorm is None:
        sync_batchnorm = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        distiller, objective, policy = _build_distiller(run_config, spec, input_map, sync_batchnorm, strategy_name)
    # recorded as run: the recipe's parts filled, and the policy "auto" resolved to
    run_config = dataclasses.replace(run_config, objective=objective, precision=dataclasses.replace(
        run_config.precision, mixed_precision=policy))

    metrics_path = os.path.join(model_dir, METRICS_FILE)
    input_check = {}
    if writes_files:
        config.save(run_config, model_dir)
        input_check = _check_teacher_input(distiller, run_config, spec, input_map)
        fileio.write_json(metrics_path, {**fileio.read_json(metrics_path, {}), "teacher_input_check": input_check})
    teacher_score = None
    if test_data is not None:
        teacher_score = _warn_if_teacher_at_chance(distiller.teacher, run_config, test_data, spec)
    student_path = os.path.join(model_dir, STUDENT_FILE)
    # Without labels, the student that agrees best with the teacher on the images of the whole run.
    monitor = f"val_{evaluation.metric_name(spec)}" if spec is not None else "run_choice"
    best = callbacks.BestStudentCheckpoint(student_path, monitor=monitor,
                                           extra_record={"config": config.to_dict(run_config)},
                                           generator_path=os.path.join(model_dir, GENERATOR_FILE))
    schedule = run_config.schedule
    started = time.time()
    try:
        history = distiller.fit(batch_size=schedule.batch_size, steps_per_epoch=schedule.iterations_per_epoch,
                                epochs=schedule.epochs, validation_data=test_data,
                                callbacks=_callbacks(run_config, best, writes_files, test_data, spec),
                                verbose=verbose)
    except callbacks.DivergedError as error:
        raise _diverged(error, run_config, input_check.get("suggestion")) from error
    seconds = time.time() - started
    if not writes_files:
        print(f"Worker finished {int(distiller.iteration.numpy())} iterations; the chief writes the results")
        return RunResult(model_dir, {}, student_path)
    keras.mixed_precision.set_global_policy("float32")  # what is exported computes in float32
    if not best.improved:
        logging.warning("this run did not beat the student already in %s (%s %.4f); kept it",
                        model_dir, best.monitor, best.best)

    student = keras.saving.load_model(student_path)
    generator = keras.saving.load_model(os.path.join(model_dir, GENERATOR_FILE))
    _export_best(run_config, student, generator, replaced=best.improved)
    metrics = _metrics(run_config, distiller, student, best, history, seconds, test_data, spec, teacher_score)
    fileio.write_json(metrics_path, {**fileio.read_json(metrics_path, {}), **metrics})
    return RunResult(model_dir, metrics, student_path)


def _strategy(run_config):
    """The strategy, made only after every check that needs no TensorFlow work has passed, and its resolved name."""
    compute = run_config.precision
    try:
        name = distribute.resolve_name(compute.strategy)
    except distribute.StrategyError as error:
        raise ConfigError("precision.strategy", str(error)) from error
    problem = precision.unsupported(compute.mixed_precision, name)
    if problem:
        raise ConfigError("precision.mixed_precision", problem)
    if name == "multi_worker" and not (
            run_config.teacher.path or fileio.exists(os.path.join(run_config.model_dir, TEACHER_FILE))):
        raise ConfigError("teacher.path", "a multi-worker run needs a trained teacher file; train one first "
                                          "(dfad-train-teacher) and pass it here")
    try:
        strategy = distribute.make_strategy(name)
    except distribute.StrategyError as error:
        raise ConfigError("precision.strategy", str(error)) from error
    replicas, batch_size = strategy.num_replicas_in_sync, run_config.schedule.batch_size
    if batch_size % replicas:
        raise ConfigError("schedule.batch_size", f"{batch_size} does not split evenly across the {replicas} "
                                                 f"replicas of the {name} strategy; use a multiple of {replicas}")
    return strategy, name


def _load_or_train_teacher(run_config, spec):
    source = run_config.teacher
    path = source.path
    if path is None:
        path = os.path.join(run_config.model_dir, TEACHER_FILE)
        if not fileio.exists(path):
            if spec is None:
                raise ConfigError("teacher.path", f"required with dataset {config.NO_DATASET!r} "
                                                  "(a .keras file or SavedModel)")
            if source.input != "normalized":
                raise ConfigError("teacher.input", "applies to a teacher file; a teacher trained here takes "
                                                   "normalized inputs")
            try:
                train_teacher(config.TeacherConfig(run_config.model_dir, run_config.data, source.training,
                                                   run_config.seed))
            except ConfigError as error:  # its fields are the teacher's here
                field = f"teacher.{error.field}" if error.field.startswith("training.") else error.field
                raise ConfigError(field, error.message) from error
    return load_model(path, source.allow_unsafe)


def _teacher_task(teacher):
    """"classification" or "segmentation", from the teacher's shapes (see `models.task_of`)."""
    try:
        return models.task_of(teacher)
    except ValueError as error:
        raise ConfigError("teacher.path", str(error)) from error


def _check_teacher(teacher, run_config, spec):
    task = _teacher_task(teacher)
    student = run_config.student.model
    if models.task(student) != task:
        raise ConfigError("student.model", f"{student} is a {models.task(student)} model but the teacher "
                                           f"is a {task} model; choose a {task} student")
    if spec is None:
        return
    dataset = run_config.data.dataset
    if task != spec.task:
        raise ConfigError("teacher.path", f"is a {task} model but the dataset {dataset} is {spec.task}")
    for shape in dict.fromkeys([spec.image_shape, spec.eval_shape or spec.image_shape]):
        if not models.takes(teacher, shape):
            raise ConfigError("teacher.path", f"takes images of shape {tuple(teacher.input_shape[1:])} but "
                                              f"the dataset {dataset} has {shape}")
    if teacher.output_shape[-1] != spec.num_classes:
        raise ConfigError("teacher.path", f"predicts {teacher.output_shape[-1]} classes but "
                                          f"the dataset {dataset} has {spec.num_classes}")


def _generated_shape(teacher, run_config, spec):
    """(height, width, channels) of the generated images: the teacher's own size, else image_size or the crop."""
    size = run_config.schedule.image_size
    size = tuple(size) if size else None
    if None not in teacher.input_shape[1:]:
        if size and size != tuple(teacher.input_shape[1:3]):
            raise ConfigError("schedule.image_size", f"the teacher only takes images of shape "
                                                     f"{tuple(teacher.input_shape[1:])}")
        return tuple(teacher.input_shape[1:])
    if size:
        field, shape = "schedule.image_size", (*size, teacher.input_shape[-1])
    elif spec is not None:
        field, shape = "data.dataset", tuple(spec.image_shape)
    else:
        raise ConfigError("schedule.image_size", "the teacher takes images of any size: say which to generate, "
                                                 "e.g. 128,128")
    try:
        teacher(np.zeros((1, *shape), "float32"), training=False)
    except Exception as error:  # TensorFlow raises many types for shapes a network cannot take
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(field, f"the teacher cannot take {shape[0]}x{shape[1]} images ({reason[:120]}); "
                                 f"use a larger size") from error
    return shape


def _load_fixed_generator(path, image_shape):
    try:
        generator = model_files.load_model(path)
    except model_files.ModelFileError as error:
        raise ConfigError("generator.fixed", str(error)) from error
    if tuple(generator.output_shape[1:]) != image_shape:
        raise ConfigError("generator.fixed", f"makes images of shape {tuple(generator.output_shape[1:])} but "
                                             f"the teacher takes {image_shape}")
    generator.trainable = False
    return generator


def _build_distiller(run_config, spec, input_map, sync_batchnorm, strategy_name):
    """Teacher (loaded or trained), student, generator, the compiled distiller, its objective and Keras policy."""
    teacher = _load_or_train_teacher(run_config, spec)
    _check_teacher(teacher, run_config, spec)
    student_config, generator_config, schedule = run_config.student, run_config.generator, run_config.schedule
    objective = resolve_objective(run_config.objective, teacher)
    try:
        weights = objectives.check_weights(dict(objective.generator_loss_weights))
    except ValueError as error:
        raise ConfigError("objective.generator_loss_weights", str(error)) from error
    policy = precision.resolve(run_config.precision.mixed_precision, strategy_name,
                               batchnorm_prior=objectives.uses_batchnorm(weights))
    keras.mixed_precision.set_global_policy(policy)  # the teacher keeps its own
    keras.utils.set_random_seed(run_config.seed)
    image_shape = _generated_shape(teacher, run_config, spec)
    try:
        student = models.build_model(student_config.model, image_shape, teacher.output_shape[-1],
                                     width=student_config.width, output_stride=student_config.output_stride)
    except ValueError as error:  # e.g. a MobileNet on images smaller than 32x32
        raise ConfigError("student.model", f"cannot build {student_config.model} for inputs {image_shape}: "
                                           f"{error}") from error
    objective = resolve_student_parts(objective, student)
    if generator_config.fixed:
        generator = _load_fixed_generator(generator_config.fixed, image_shape)
    else:
        statistics = dict(data_mean=spec.mean, data_std=spec.std) if spec is not None else {}
        output_map = conventions.from_tanh_pixels(input_map, **statistics) if objective.generate_pixels else input_map
        generator = conventions.adapt_generator(
            models.build_generator(generator_config.model, generator_config.latent_dim, image_shape,
                                   width=generator_config.width, synchronized_batchnorm=sync_batchnorm,
                                   standardize_output=False if objective.generate_pixels else None),
            *output_map, clip_to=conventions.pixel_range(*input_map, **statistics) if objective.clip_pixels else None)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=schedule.imitation_steps,
                                  seed=run_config.seed, replay_memory=objective.replay_memory,
                                  generator_average=objective.generator_average,
                                  student_average=objective.student_average)
    try:
        distiller.compile(
            *optimizers.paper_optimizers(
                student_config.learning_rate, generator_config.learning_rate,
                weight_decay=student_config.weight_decay, momentum=student_config.momentum,
                decay_epochs=list(schedule.lr_decay_epochs), decay_factor=schedule.lr_decay_factor,
                iterations_per_epoch=schedule.iterations_per_epoch, imitation_steps=schedule.imitation_steps),
            loss=discrepancy(objective),
            metrics=[evaluation.keras_metric(spec)] if spec is not None else None,
            generator_loss_weights=weights,
            student_training_in_generator_step=objective.student_training_in_generator_step,
            jit_compile=run_config.precision.jit_compile)
    except ValueError as error:  # the generator's objective does not fit the teacher, e.g. a BN prior without BN
        raise ConfigError("objective.generator_loss_weights", str(error)) from error
    return distiller, objective, policy


def resolve_objective(objective, teacher):
    """`objective` with every part its recipe decides by the teacher left None taken from it (`recipes.Recipe`)."""
    return _fill(objective, _recipe(objective).parts(teacher))


def resolve_student_parts(objective, student):
    """`objective` with every part its recipe decides by the student left None taken from it (`recipes.Recipe`)."""
    return _fill(objective, _recipe(objective).student_parts(student))


def _recipe(objective):
    if objective.recipe not in recipes.RECIPES:
        raise ConfigError("objective.recipe", f"unknown recipe {objective.recipe!r}; choose one of: "
                                              f"{', '.join(recipes.RECIPES)}")
    return recipes.RECIPES[objective.recipe]


def _fill(objective, parts):
    return dataclasses.replace(objective, **{name: value for name, value in parts.items()
                                             if getattr(objective, name) is None})


def discrepancy(objective):
    """The `losses.Discrepancy` of an `ObjectiveConfig`."""
    return losses.Discrepancy(objective.loss, standardize=objective.standardize_logits)


def _check_teacher_input(distiller, run_config, spec, input_map):
    """Warns when the teacher's first BatchNorm layer says that the input convention is likely wrong.

    Scores the step-0 generated images (the first imitation step's noise, the
    generator in training mode, on a copy so that its moving averages stay
    untouched) with `conventions.check_input_convention`.

    Returns:
        What was found, for metrics.json.
    """
    generator = keras.models.clone_model(distiller.generator)
    generator.set_weights(distiller.generator.get_weights())
    images = generator(distiller.latent_noise(run_config.schedule.batch_size, 0)[:, 0], training=True)
    statistics = dict(data_mean=spec.mean, data_std=spec.std) if spec is not None else {}
    convention = run_config.teacher.input
    check = conventions.check_input_convention(distiller.teacher, images, convention, input_map, **statistics)
    if check is None:
        logging.info("the teacher's input convention was not checked: it has no readable BatchNormalization layer")
        return {"checked": False, "reason": "the teacher has no readable BatchNormalization layer"}
    if check.suggestion:
        logging.warning(
            "teacher input convention %s looks wrong for this teacher: generated images mapped by it are %.3g (KL) "
            "from the running statistics of its first BatchNorm layer, against %.3g with %s; rerun with "
            "--teacher_input=%s unless you know the teacher's convention", convention,
            check.mismatches[convention], check.mismatches[check.suggestion], check.suggestion, check.suggestion)
    return {"checked": True, "batchnorm_mismatch": check.mismatches, "suggestion": check.suggestion}


def _warn_if_teacher_at_chance(teacher, run_config, test_data, spec):
    """Warns when the teacher does no better on held-out data than a constant prediction; returns its score."""
    images, labels = test_data
    score = evaluation.model_score(teacher, images, labels, spec)
    at_chance, constant = evaluation.at_chance(score, labels, spec)
    if at_chance:
        logging.warning("the teacher scores %.3f (%s) on held-out --dataset=%s, no better than always predicting "
                        "one class (%.3f): check --teacher_input=%s and that --dataset is the teacher's",
                        score, evaluation.metric_name(spec), run_config.data.dataset, constant,
                        run_config.teacher.input)
    return score


def _diverged(error, run_config, suggested_input=None):
    """The ConfigError of a run that went NaN or diverged: which field to change, and how.

    `suggested_input` is the convention the teacher's BatchNorm statistics
    suggested instead of `teacher.input`, if any: images in the wrong range
    make the student diverge too.
    """
    kept = "the best student so far stays in --model_dir"
    if error.model == "teacher":
        return ConfigError("teacher.input", f"{error.reason} at DFAD iteration {error.iteration}: the teacher's "
                                            "outputs on generated images are not finite; check that "
                                            f"--teacher_input={run_config.teacher.input} is what it takes ({kept})")
    if suggested_input:
        return ConfigError("teacher.input", f"{error.reason} at DFAD iteration {error.iteration}: the student "
                                            f"diverged on images in the wrong range; try --teacher_input="
                                            f"{suggested_input} (see the warning above) ({kept})")
    return ConfigError("student.learning_rate", f"{error.reason} at DFAD iteration {error.iteration}: the student "
                                                f"diverged; try a lower --student_lr than "
                                                f"{run_config.student.learning_rate:g} ({kept})")


def _callbacks(run_config, best, writes_files, test_data, spec):
    """The run's side jobs; a multi-worker run's non-chief workers only train and restore."""
    model_dir = run_config.model_dir
    backup_dir = os.path.join(model_dir, "backup")
    if not writes_files:
        return [callbacks.StopOnDivergence(), callbacks.TrainingBackup(backup_dir, write=False)]
    choice = callbacks.RunImagesAgreement(seed=run_config.seed + 2)
    backup = callbacks.TrainingBackup(backup_dir, states=[choice])
    if backup.exists:
        print(f"Resuming the interrupted run in {backup.backup_dir}")
    logs, samples = os.path.join(model_dir, "logs"), os.path.join(model_dir, "samples")
    pictures = []
    if spec is not None and spec.task == "segmentation":
        images, labels = test_data
        pictures.append(callbacks.SegmentationPictures(images[:8], labels[:8], logs, samples))
    history = os.path.join(model_dir, HISTORY_FILE)
    return [
        callbacks.StopOnDivergence(),
        callbacks.GeneratedAgreement(seed=run_config.seed + 1),
        choice,
        best,
        callbacks.HistoryCSV(history, append=backup.exists),
        callbacks.TrainingCurves(history, os.path.join(model_dir, CURVES_FILE),
                                 run_config.schedule.iterations_per_epoch),
        callbacks.IterationScalars(logs),
        callbacks.GeneratedImages(logs, samples, seed=run_config.seed, class_names=spec and spec.class_names),
        *pictures,
        backup,  # last: an epoch is backed up once every other side job is done with it
    ]


def _export_best(run_config, student, generator, replaced):
    """Exports the best student, unless it is the one already exported."""
    model_dir, formats = run_config.model_dir, run_config.export.formats
    variants = [name for name in formats if name in export_lib.VARIANTS]
    if not replaced:
        variants = [v for v in variants if not fileio.exists(os.path.join(model_dir, export_lib.tflite_filename(v)))]
    saved_model = "saved_model" in formats and (
        replaced or not fileio.exists(os.path.join(model_dir, "student_savedmodel")))
    return export_lib.export_student(student, model_dir, variants, saved_model=saved_model, generator=generator,
                                     calibration_images=run_config.export.calibration_images,
                                     int8_io=run_config.export.int8_io, seed=run_config.seed)


def _metrics(run_config, distiller, student, best, history, seconds, test_data, spec, teacher_score):
    model_dir = run_config.model_dir
    record = best.record
    iterations = len(history.epoch) * run_config.schedule.iterations_per_epoch
    metric = evaluation.metric_name(spec) if spec is not None else "accuracy"
    measure = "mean IoU" if metric == "miou" else "accuracy"
    metrics = {
        "config": record["config"],
        "selection": {"monitor": record["monitor"], "value": record["value"], "epoch": record["epoch"]},
        "this_run": {"seconds": round(seconds, 1), "epochs_run": len(history.epoch),
                     "iterations_per_second": round(iterations / seconds, 3),
                     "total_iterations": int(distiller.iteration.numpy()),  # including those before a resume
                     "replaced_student": best.improved},
        "notes": {
            f"student_{metric}": f"held-out {measure} of the exported student (student.keras) itself",
            f"best_epoch_{metric}": f"the paper's protocol: the best held-out {measure} over the epochs of "
                                    f"distillation; equal to student_{metric} when selection.monitor is val_{metric}",
            "selections": f"the held-out {measure} each way of choosing the student would have given: the best "
                          "epoch by labels (the paper's protocol), and without labels the last epoch, the epoch "
                          "of the best gen_agreement, or the student that agreed best with the teacher on the "
                          "images generated over the whole run (run_choice, what a run without labels keeps)",
            "selection": f"student.keras is the student of the epoch with the best selection.monitor: val_{metric} "
                         f"(held-out {measure}) with labelled data, else run_choice: the epoch of the student "
                         "that agreed best with the teacher on the images generated over the whole run",
            "within_2_points_of_teacher": f"the first epoch whose student's held-out {measure} was within 0.02 of "
                                          "the teacher's, and the wall seconds of distillation to its end (null: "
                                          "none was)",
        },
    }
    if test_data is not None:
        images, labels = test_data
        metrics[f"teacher_{metric}"] = teacher_score  # the frozen teacher's, measured before distilling
        metrics[f"student_{metric}"] = evaluation.model_score(student, images, labels, spec)
        if record["monitor"] == f"val_{metric}":
            metrics[f"best_epoch_{metric}"] = record["value"]
        # Every epoch, those before a resume too.
        epochs = fileio.read_csv(os.path.join(model_dir, HISTORY_FILE))
        metrics["selections"] = evaluation.selections(epochs, metric)
        metrics["within_2_points_of_teacher"] = evaluation.first_within(epochs, teacher_score - 0.02, metric)
        if "float32" in run_config.export.formats:
            logits = export_lib.tflite_predict(os.path.join(model_dir, export_lib.tflite_filename("float32")), images)
            metrics[f"student_tflite_{metric}"] = evaluation.score(logits, labels, spec)
    return metrics


def run_setting(run_dir, data_config=None, teacher=None):
    """The data and teacher of the run in `run_dir` (its run_config.json), checked against any given.

    Args:
        run_dir: a `distill` model_dir, or None.
        data_config: a `DataConfig` given for it, or None to take the run's.
        teacher: a `TeacherSource` given for it, or None to take the run's.

    Returns:
        `(data_config, teacher, recorded)`: defaults where neither is known; `recorded` is
        the run's `DistillConfig`, or None.

    Raises:
        ConfigError: a given dataset or input convention disagrees with the run's.
    """
    recorded = config.load(run_dir) if run_dir else None
    if recorded is None:
        return data_config or config.DataConfig(), teacher or config.TeacherSource(), None
    if data_config is not None and data_config.dataset != recorded.data.dataset:
        raise ConfigError("data.dataset", f"{data_config.dataset} disagrees with the run in {run_dir}, made with "
                                          f"{recorded.data.dataset}; leave it out")
    if teacher is not None and (teacher.input, teacher.input_mean, teacher.input_std) != (
            recorded.teacher.input, recorded.teacher.input_mean, recorded.teacher.input_std):
        raise ConfigError("teacher.input", f"{teacher.input} disagrees with the run in {run_dir}, made with "
                                           f"{recorded.teacher.input}; leave it out")
    # A given data_dir or teacher path may differ: the files moved, or another machine.
    return data_config or recorded.data, teacher or recorded.teacher, recorded


def _load_keras(path, field):
    if not fileio.is_file(path):
        raise ConfigError(field, f"{path}: no such file (expected a .keras file from distill)")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for unreadable files
        raise ConfigError(field, f"{path}: cannot be read as a Keras model ({type(error).__name__})") from error


def export(run_dir=None, variants=export_lib.VARIANTS, saved_model=True, references=True, qat_iterations=0,
           qat_student_lr=1e-4, qat_batch_size=128, calibration_images=512, int8_io=False, seed=0,
           output_dir=None, student_path=None, generator_path=None, data_config=None,
           teacher=None, input="model", output="logits"):
    """Exports a distilled student for the edge and measures what each variant costs; `dfad-export`.

    Writes student_savedmodel/ and the TFLite `variants`, with
    `qat_iterations`, student_qat_int8.tflite (the student fine-tuned
    quantization-aware by more DFAD iterations of the run's recipe), and
    export_report.json: what the files take and return, and per file its size,
    held-out score (or agreement on generated images without data), agreement
    with the Keras student and latency, each fed the images as it takes them.

    Args:
        run_dir: a `distill` model_dir: the default place of every input and output, and of the
            dataset and teacher input convention (run_config.json).
        variants: TFLite variants (`export.VARIANTS`).
        saved_model: also write student_savedmodel/.
        references: add int8 files calibrated on noise and on real images to the report (not shipped).
        qat_iterations, qat_student_lr, qat_batch_size: quantization-aware fine-tuning (0: none).
        calibration_images, int8_io, seed: as for `ExportConfig`, and the seed of the generated images.
        output_dir, student_path, generator_path: default: in `run_dir`.
        data_config, teacher: a `DataConfig` and `TeacherSource` (its path: default RUN_DIR/teacher.keras) for a
            student without a run_config.json; given with one, they must agree with it.
        input, output: what the files take and return (`export.ServingInterface`): by default the student's
            own input and logits; "unit" or "uint8" pixels, with the normalisation baked in, and
            "probabilities" for an edge app.

    Returns:
        The report (as written to export_report.json).
    """
    if qat_iterations and qat.missing_packages():
        raise ConfigError("qat_iterations", f"needs {' and '.join(qat.missing_packages())}, installed by "
                                            "the qat extra: pip install 'dfad_tf[qat]'")
    data_config, teacher, recorded = run_setting(run_dir, data_config, teacher)

    def path(given, field, filename):
        if given:
            return given
        if run_dir:
            return os.path.join(run_dir, filename)
        raise ConfigError(field, f"give it or a run_dir (a distill model_dir holding {filename})")

    student = _load_keras(path(student_path, "student_path", STUDENT_FILE), "student_path")
    if qat_iterations and models.task_of(student) == "segmentation":
        raise ConfigError("qat_iterations", "quantization-aware training supports the classifier students only; "
                                            "export a segmentation student without it")
    has_data = data_config.dataset != config.NO_DATASET
    needs_generator = "int8" in variants or qat_iterations or references or not has_data
    generator = _load_keras(path(generator_path, "generator_path", GENERATOR_FILE),
                            "generator_path") if needs_generator else None
    teacher_model = load_model(path(teacher.path, "teacher.path", TEACHER_FILE),
                               teacher.allow_unsafe) if qat_iterations else None
    output_dir = output_dir or run_dir or os.path.dirname(student_path) or "."
    spec = data.spec(data_config.dataset) if has_data else None
    input_map = teacher_input_map(teacher, spec)
    interface = serving_interface(input, output, spec, input_map, int8_io, qat_iterations)
    labels = None
    if has_data:
        images, labels = evaluation.arrays(labelled_dataset(data_config, "test"))
        images = conventions.adapt_images(images, *input_map)
    else:  # without labelled data, fidelity to the Keras student is measured on generated images
        images = export_lib.generated_images(generator, 512, seed=seed + 1)

    try:
        files = export_lib.export_student(student, output_dir, variants, saved_model=saved_model,
                                          generator=generator, calibration_images=calibration_images,
                                          int8_io=int8_io, seed=seed, interface=interface)
    except ValueError as error:
        raise ConfigError("student_path", str(error)) from error
    if qat_iterations:
        print(f"Quantization-aware fine-tuning for {qat_iterations} data-free iterations")
        run_config = recorded or config.DistillConfig(model_dir=output_dir)
        objective = resolve_objective(run_config.objective, teacher_model)  # recorded runs: already resolved
        quantized = qat.quantization_aware_finetune(
            teacher_model, student, generator, iterations=qat_iterations, batch_size=qat_batch_size,
            imitation_steps=run_config.schedule.imitation_steps, student_lr=qat_student_lr, seed=seed,
            width=run_config.student.width, loss=discrepancy(objective),
            generator_loss_weights=objective.generator_loss_weights,
            student_training_in_generator_step=objective.student_training_in_generator_step)
        files["qat_int8"] = os.path.join(output_dir, "student_qat_int8.tflite")
        qat.export_qat_tflite(quantized, files["qat_int8"])

    with tempfile.TemporaryDirectory() as scratch:
        measured = dict(files)
        if references:
            measured.update(_references(student, scratch, input_map, data_config, images.shape[1:],
                                        calibration_images, int8_io, seed, interface))
        rows = edge_report.measure(student, measured, images, labels, spec, interface=interface)
    for row in rows:
        if row["name"].endswith("_calibrated"):
            row["file"] = None  # a reference, not shipped
    report = {"interface": interface.describe(student), "rows": rows,
              "images": "held-out" if labels is not None else "generated",
              "config": {"variants": list(variants), "input": input, "output": output, "int8_io": int8_io,
                         "calibration_images": calibration_images,
                         "qat_iterations": qat_iterations, "qat_student_lr": qat_student_lr, "seed": seed,
                         "dataset": data_config.dataset, "teacher_input": teacher.input}}
    fileio.write_json(os.path.join(output_dir, "export_report.json"), report)
    return report


def serving_interface(input, output, spec, input_map, int8_io=False, qat_iterations=0):
    """The `export.ServingInterface` of `input` and `output`, with the normalisation of `spec` and `input_map`."""
    mean, std = (spec.mean, spec.std) if spec is not None else (conventions.GENERIC_MEAN, conventions.GENERIC_STD)
    if input != "model" and int8_io:
        raise ConfigError("int8_io", f"gives the int8 file int8 inputs, but --input={input} files take pixels; "
                                     "drop one of the two")
    if input != "model" and qat_iterations:
        raise ConfigError("qat_iterations", "the quantization-aware file takes the student's own input; "
                                            "use --input=model with it")
    try:
        return export_lib.ServingInterface(input, output, conventions.from_unit_pixels(input_map, mean, std),
                                           mean, std, spec.class_names if spec is not None else None)
    except ValueError as error:
        raise ConfigError("input" if input not in export_lib.INPUTS else "output", str(error)) from error


def _references(student, output_dir, input_map, data_config, shape, count, int8_io, seed, interface):
    """int8 files calibrated on noise and on real training images, for the report only."""
    sources = {"int8_noise_calibrated": np.random.default_rng(seed).standard_normal(
        (count, *shape)).astype("float32")}
    if data_config.dataset != config.NO_DATASET:
        sources["int8_real_calibrated"] = evaluation.arrays(labelled_dataset(data_config, "train").take(count))[0]
    sources = {name: conventions.adapt_images(images, *input_map) for name, images in sources.items()}
    paths = {}
    for name, calibration in sources.items():
        paths[name] = os.path.join(output_dir, f"{name}.tflite")
        export_lib.export_tflite(interface.wrap(student), paths[name], "int8", interface.file_inputs(calibration),
                                 int8_io)
    return paths


def evaluate(model_path=None, run_dir=None, split="test", allow_unsafe=False, data_config=None, teacher=None):
    """A model's held-out accuracy (mean IoU for segmentation) on its dataset; `dfad-evaluate`.

    Args:
        model_path: a .keras/.h5/.tflite file or SavedModel directory (default: RUN_DIR/student.keras).
        run_dir: a `distill` model_dir, whose dataset and teacher input convention apply.
        split: "train" or "test".
        allow_unsafe: load a model file holding Python code or non-tensor operations.
        data_config, teacher: the `DataConfig`, and the `TeacherSource` whose input convention the
            model takes, for a model without a run; given with one, they must agree with it.

    Returns:
        `{"model", "dataset", "split", "accuracy" or "miou", "examples"}`.
    """
    data_config, teacher, _ = run_setting(run_dir, data_config, teacher)
    if model_path is None:
        if not run_dir:
            raise ConfigError("model_path", "give the model to evaluate, or a run_dir")
        model_path = os.path.join(run_dir, STUDENT_FILE)
    spec = data.spec(data_config.dataset) if data_config.dataset != config.NO_DATASET else None
    images, labels = evaluation.arrays(labelled_dataset(data_config, split))
    images = conventions.adapt_images(images, *teacher_input_map(teacher, spec))
    if model_path.endswith(".tflite"):
        if not fileio.is_file(model_path):
            raise ConfigError("model_path", f"{model_path}: no such file")
        try:
            logits = export_lib.tflite_predict(model_path, images)
        except (ValueError, RuntimeError) as error:
            raise ConfigError("model_path", f"{model_path}: cannot run as TFLite ({error})") from error
    else:
        model = load_model(model_path, allow_unsafe, field="model_path", unlock="allow_unsafe")
        if not models.takes(model, images.shape[1:]):
            raise ConfigError("model_path", f"takes images of shape {tuple(model.input_shape[1:])} but "
                                            f"the dataset {data_config.dataset} has {images.shape[1:]}")
        logits = evaluation.predict(model, images, batch_size=32)
    if logits.shape[-1] != spec.num_classes or logits.ndim != labels.ndim + 1:
        raise ConfigError("model_path", f"outputs shape {logits.shape[1:]} but the dataset {data_config.dataset} "
                                        f"is {spec.task} into {spec.num_classes} classes")
    return {"model": model_path, "dataset": data_config.dataset, "split": split,
            evaluation.metric_name(spec): evaluation.score(logits, labels, spec), "examples": int(len(labels))}
