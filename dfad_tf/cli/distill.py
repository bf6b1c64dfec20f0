"""Distill a teacher into a small student without any real data (DFAD).

A generator invents images on which teacher and student disagree; the student
learns to agree on them; the two alternate until the student matches the
teacher. Real labelled data (--dataset) is only used to train a teacher when
--teacher is not given and to measure the student on held-out images after
each epoch; with --dataset=none nothing but the teacher is needed.

Leaves in MODEL_DIR: student.keras (the best student so far, chosen by held-out
accuracy or, without data, by agreement with the teacher on generated images),
student.json (how it was chosen), generator.keras, student_savedmodel/,
student.tflite, metrics.json, history.csv, curves.png (its curves), logs/
(TensorBoard: losses, metrics, generated samples, at DFAD iterations) and
samples/epoch_NNN.png. A killed run restarted with the same command resumes
from its last finished epoch.

--strategy spreads each global batch over several GPUs (mirrored) or hosts
(multi_worker, configured by the TF_CONFIG environment variable; only the
chief writes files).

Example:
  dfad-distill --flagfile=flags/digits.cfg --model_dir=runs/digits
"""

import os
import time

from absl import flags, logging

from dfad_tf import distribute, export, fileio, losses, models, objectives, precision, recipes
from dfad_tf.cli import common, train_teacher

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)  # --help lists the shared flags too (a teacher may be trained here)

flags.DEFINE_enum("student", "lenet5_half", sorted(models.CLASSIFIERS) + sorted(models.SEGMENTERS),
                  "Student architecture: the paper's (lenet5_half, resnet18_8x, ...) or an edge network for any "
                  "teacher (mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large); for a segmentation teacher, "
                  "deeplabv3_mobilenet_v2 (the paper's) or deeplabv3_resnet50.")
flags.DEFINE_float("student_width", 1.0, "Width multiplier of the student: a scaled copy of a paper network, or "
                                         "a MobileNet's alpha.", lower_bound=0.01)
flags.DEFINE_enum("generator", "generator_a", sorted(models.GENERATORS),
                  "Generator architecture: generator_a (upsampling, MNIST/CIFAR) or generator_b (DCGAN).")
flags.DEFINE_integer("generator_width", 64, "Base filter count of the generator (64 in the paper).", lower_bound=1)
flags.DEFINE_integer("latent_dim", 256, "Length of the generator's noise vector.", lower_bound=1)
flags.DEFINE_integer("batch_size", 512, "Generated images per imitation or generation step: the global batch, split "
                                        "evenly across the replicas of --strategy.", lower_bound=1)
flags.DEFINE_integer("imitation_steps", 5, "Student updates per generator update (k).", lower_bound=1)
flags.DEFINE_integer("iterations_per_epoch", 50,
                     "DFAD iterations (k imitation + 1 generation step) per epoch; validation runs after each.",
                     lower_bound=1)
flags.DEFINE_integer("epochs", 40, "Epochs of distillation.", lower_bound=1)
flags.DEFINE_float("student_lr", 0.1, "Initial SGD learning rate of the student.")
flags.DEFINE_float("student_momentum", 0.9, "SGD momentum of the student.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("student_weight_decay", 5e-4, "SGD weight decay of the student (0 for none).", lower_bound=0.0)
flags.DEFINE_float("generator_lr", 1e-3, "Initial Adam learning rate of the generator.")
flags.DEFINE_list("lr_decay_epochs", [],
                  "Comma-separated epochs at which both learning rates are multiplied by --lr_decay_factor.")
flags.DEFINE_float("lr_decay_factor", 0.1, "Step-decay multiplier of both learning rates.")
flags.DEFINE_enum("loss", "mae", list(losses.DISCREPANCIES),
                  "Discrepancy between teacher and student outputs: mae (the paper's), mse, kld, mse+mae.")
flags.DEFINE_enum("recipe", "robust", list(recipes.RECIPES),
                  "What the generator optimises and how the student learns: robust (the default, for any teacher: "
                  "standardized logits, clipped pixels, a replay memory, a BatchNorm prior when the teacher's "
                  "BatchNorm layers can be read) or paper (DFAD exactly as published). The four flags below "
                  "override single parts of it.")
flags.DEFINE_bool("standardize_logits", None,
                  "Standardize each teacher and student logit vector (mean 0, std 1) before --loss, so that the "
                  "discrepancy ignores logit scale; the student then matches the teacher's logits up to shift and "
                  "scale (same argmax). Default: from --recipe (robust: on; paper: off).")
flags.DEFINE_integer("replay_memory", None,
                     "Images kept in a replay memory of recent generated images; every imitation step also trains "
                     "the student on as many images drawn from it, so it does not forget what earlier generators "
                     "taught it (0: none). Default: from --recipe (robust: 8192; paper: 0).", lower_bound=0)
flags.DEFINE_bool("clip_pixels", None,
                  "Clip generated images to the range real pixels have in the teacher's input convention (black to "
                  "white), so that the generator cannot invent pixels no teacher was trained on. Default: from "
                  "--recipe (robust: on; paper: off).")
flags.DEFINE_bool("jit_compile", False,
                  "Compile each DFAD iteration with XLA. Off by default: on CPU, XLA ran the paper's networks at "
                  "0.69x to 1.00x TensorFlow's plain graph, with a third more memory (benchmarks/README.md); "
                  "try it on other hardware.")
flags.DEFINE_multi_enum("export", ["saved_model", "float32"], ["saved_model", *export.VARIANTS],
                        "What to export from the best student: saved_model (MODEL_DIR/student_savedmodel) and "
                        "TFLite variants: float32 (MODEL_DIR/student.tflite), float16, dynamic_int8, int8 "
                        "(MODEL_DIR/student_VARIANT.tflite; int8 is calibrated on generated images). Repeat the "
                        "flag for several; `dfad-export` adds a report and quantization-aware training.")

flags.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored (all local GPUs), multi_worker "
                  "(MultiWorkerMirroredStrategy over the hosts in the TF_CONFIG environment variable; only the "
                  "chief writes files, and MODEL_DIR must be a directory all hosts see), tpu, or auto: "
                  "multi_worker when TF_CONFIG names several tasks, mirrored when several GPUs are visible, "
                  "else default.")
flags.DEFINE_bool("sync_batchnorm", None,
                  "Synchronize the generator's BatchNorm statistics across replicas, so that they are those of "
                  "the global batch (default: on when the strategy has several replicas). The student's "
                  "BatchNorm layers always use their own replica's batch, as in ordinary data-parallel training.")
flags.DEFINE_enum("mixed_precision", "float32", list(precision.POLICIES),
                  "Keras dtype policy of the student and generator: float32, mixed_bfloat16 (TPUs, GPUs of "
                  "compute capability 8.0+, processors with avx512_bf16/amx_bf16) or mixed_float16 (GPUs of "
                  "compute capability 7.0+; both optimizers scale the loss). Saved students are float32.")

common.require_positive("student_lr", "generator_lr", "lr_decay_factor")
flags.DEFINE_list("generator_loss_weights", None,
                  "What the generator optimises, as TERM=WEIGHT pairs over the terms adversarial (DFAD's "
                  "discrepancy), batchnorm and batchnorm_kl (match the teacher's BatchNorm statistics, a prior as in "
                  "DeepInversion and DFQ; batchnorm_kl is the same in size for any teacher), one_hot, activation "
                  "and balance (DAFL's terms), smoothness (an image prior needing only the teacher's outputs). "
                  "Default: from --recipe (paper: adversarial=1; robust: adversarial=1, plus batchnorm_kl=1 when "
                  "the teacher's BatchNorm layers can be read). DAFL is one_hot=1,activation=0.1,balance=5.")
flags.DEFINE_string("fixed_generator", None,
                    "A generator.keras of an earlier run: train a fresh student on its images, the generator "
                    "frozen (no generation stage).")
common.require_epoch_list("lr_decay_epochs")


def _parse_weights(pairs):
    """`--generator_loss_weights` as a mapping; a ValueError if it is not valid weights."""
    pairs = (pair.split("=") for pair in pairs)
    return objectives.check_weights({term.strip(): float(value) for term, value in pairs})


def _valid_weights(pairs):
    if pairs is None:
        return True
    try:
        return bool(_parse_weights(pairs))
    except ValueError:
        return False


flags.register_validator(
    "generator_loss_weights", _valid_weights,
    message=f"--generator_loss_weights must be TERM=WEIGHT pairs with weights >= 0, not all 0, over the terms "
            f"{', '.join(objectives.TERMS)}; e.g. adversarial=1,batchnorm=0.1")


def _load_teacher(model_dir, has_data):
    if FLAGS.teacher:
        path = FLAGS.teacher
    else:
        path = os.path.join(model_dir, "teacher.keras")
        if not fileio.exists(path):
            if not has_data:
                raise common.FlagError("teacher", f"required with --dataset={common.NO_DATASET} (a .keras file or SavedModel)")
            if FLAGS.teacher_input != "normalized":
                raise common.FlagError("teacher_input", "applies to a --teacher file; a teacher trained here takes "
                                                        "normalized inputs")
            train_teacher.train_and_save(model_dir)
    return common.load_teacher(path)


def _load_fixed_generator(image_shape):
    from dfad_tf import model_files

    try:
        generator = model_files.load_model(FLAGS.fixed_generator)
    except model_files.ModelFileError as error:
        raise common.FlagError("fixed_generator", str(error)) from error
    if tuple(generator.output_shape[1:]) != image_shape:
        raise common.FlagError("fixed_generator", f"makes images of shape {tuple(generator.output_shape[1:])} but "
                                                  f"the teacher takes {image_shape}")
    generator.trainable = False
    return generator


def _teacher_task(teacher):
    """"classification" or "segmentation", from the ranks of the teacher's input and output."""
    if len(teacher.input_shape) == 4 and len(teacher.output_shape) == 2:
        return "classification"
    if len(teacher.input_shape) == 4 and len(teacher.output_shape) == 4:
        return "segmentation"
    raise common.FlagError("teacher", f"expected an image classifier (batch, h, w, c) -> (batch, classes) or a "
                                      f"segmentation model (batch, h, w, c) -> (batch, h, w, classes), got "
                                      f"{teacher.input_shape} -> {teacher.output_shape}")


def _check_teacher(teacher, spec):
    task = _teacher_task(teacher)
    if models.task(FLAGS.student) != task:
        raise common.FlagError("student", f"{FLAGS.student} is a {models.task(FLAGS.student)} model but the teacher "
                                          f"is a {task} model; choose a {task} student")
    if spec is None:
        return
    if task != spec.task:
        raise common.FlagError("teacher", f"is a {task} model but --dataset={FLAGS.dataset} is {spec.task}")
    for shape in dict.fromkeys([spec.image_shape, spec.eval_shape or spec.image_shape]):
        if not models.takes(teacher, shape):
            raise common.FlagError("teacher", f"takes images of shape {tuple(teacher.input_shape[1:])} but "
                                              f"--dataset={FLAGS.dataset} has {shape}")
    if teacher.output_shape[-1] != spec.num_classes:
        raise common.FlagError("teacher", f"predicts {teacher.output_shape[-1]} classes but "
                                          f"--dataset={FLAGS.dataset} has {spec.num_classes}")


def _generated_shape(teacher, spec):
    """(height, width, channels) of the generated images: the teacher's own size, else --image_size or the crop."""
    size = common.image_size()
    if None not in teacher.input_shape[1:]:
        if size and size != tuple(teacher.input_shape[1:3]):
            raise common.FlagError("image_size", f"the teacher only takes images of shape "
                                                 f"{tuple(teacher.input_shape[1:])}")
        return tuple(teacher.input_shape[1:])
    if size:
        flag, shape = "image_size", (*size, teacher.input_shape[-1])
    elif spec is not None:
        flag, shape = "dataset", tuple(spec.image_shape)
    else:
        raise common.FlagError("image_size", "the teacher takes images of any size: say which to generate, e.g. "
                                             "--image_size=128,128")
    return _check_runs(teacher, shape, flag)


def _check_runs(model, shape, flag):
    """`shape` if `model` runs on one image of it; else a FlagError naming `flag` (e.g. too small for its strides)."""
    import numpy as np

    try:
        model(np.zeros((1, *shape), "float32"), training=False)
    except Exception as error:  # TensorFlow raises many types for shapes a network cannot take
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise common.FlagError(flag, f"the teacher cannot take {shape[0]}x{shape[1]} images ({reason[:120]}); "
                                     f"use a larger size") from error
    return shape


def recipe_settings(teacher):
    """The parts of --recipe for this teacher, each overridden by its own flag when given."""
    recipe = recipes.RECIPES[FLAGS.recipe]
    settings = {name: getattr(recipe, name) if FLAGS[name].value is None else FLAGS[name].value
                for name in ("standardize_logits", "clip_pixels", "replay_memory")}
    settings["generator_loss_weights"] = (recipe.generator_loss_weights(teacher) if FLAGS.generator_loss_weights is None
                                          else _parse_weights(FLAGS.generator_loss_weights))
    return settings


def configuration(settings):
    """The flags that define this run and the recipe's settings, as recorded in student.json and metrics.json."""
    names = ["dataset", "teacher", "teacher_input", "teacher_input_mean", "teacher_input_std", "student",
             "student_width", "output_stride", "image_size", "generator", "generator_width", "latent_dim", "batch_size",
             "imitation_steps", "iterations_per_epoch", "epochs", "student_lr", "student_momentum",
             "student_weight_decay", "generator_lr", "lr_decay_epochs", "lr_decay_factor", "recipe", "loss",
             "standardize_logits", "generator_loss_weights", "replay_memory", "clip_pixels", "fixed_generator", "seed", "strategy", "sync_batchnorm",
             "mixed_precision", "jit_compile"]
    return {**{name: FLAGS[name].value for name in names}, **settings}


def _build_distiller(model_dir, spec, input_map, sync_batchnorm):
    """Teacher (loaded or trained), student, generator and the compiled distiller, and `recipe_settings`."""
    import keras

    from dfad_tf import conventions, evaluation, optimizers
    from dfad_tf.distiller import DataFreeDistiller

    teacher = _load_teacher(model_dir, has_data=spec is not None)
    _check_teacher(teacher, spec)
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)  # the teacher keeps its own
    keras.utils.set_random_seed(FLAGS.seed)
    image_shape = _generated_shape(teacher, spec)
    settings = recipe_settings(teacher)
    try:
        student = models.build_model(FLAGS.student, image_shape, teacher.output_shape[-1], width=FLAGS.student_width,
                                     output_stride=int(FLAGS.output_stride))
    except ValueError as error:  # e.g. a MobileNet on images smaller than 32x32
        raise common.FlagError("student", f"cannot build {FLAGS.student} for inputs {image_shape}: {error}") from error
    if FLAGS.fixed_generator:
        generator = _load_fixed_generator(image_shape)
    else:
        data = dict(data_mean=spec.mean, data_std=spec.std) if spec is not None else {}
        generator = conventions.adapt_generator(
            models.build_generator(FLAGS.generator, FLAGS.latent_dim, image_shape, width=FLAGS.generator_width,
                                   synchronized_batchnorm=sync_batchnorm),
            *input_map, clip_to=conventions.pixel_range(*input_map, **data) if settings["clip_pixels"] else None)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=FLAGS.imitation_steps,
                                  seed=FLAGS.seed, replay_memory=settings["replay_memory"])
    try:
        distiller.compile(
            *optimizers.paper_optimizers(
                FLAGS.student_lr, FLAGS.generator_lr, weight_decay=FLAGS.student_weight_decay,
                momentum=FLAGS.student_momentum, decay_epochs=[int(e) for e in FLAGS.lr_decay_epochs],
                decay_factor=FLAGS.lr_decay_factor, iterations_per_epoch=FLAGS.iterations_per_epoch,
                imitation_steps=FLAGS.imitation_steps),
            loss=losses.Discrepancy(FLAGS.loss, standardize=settings["standardize_logits"]),
            metrics=[evaluation.keras_metric(spec)] if spec is not None else None,
            generator_loss_weights=settings["generator_loss_weights"], jit_compile=FLAGS.jit_compile)
    except ValueError as error:  # the generator's objective does not fit the teacher, e.g. a BN prior without BN
        raise common.FlagError("generator_loss_weights", str(error)) from error
    return distiller, settings


def _check_teacher_input(distiller, spec, input_map):
    """Warns when the teacher's first BatchNorm layer says that --teacher_input is likely wrong.

    Scores the step-0 generated images (the first imitation step's noise, the
    generator in training mode, on a copy so that its moving averages stay
    untouched) with `conventions.check_input_convention`.

    Returns:
        What was found, for metrics.json.
    """
    import keras

    from dfad_tf import conventions

    generator = keras.models.clone_model(distiller.generator)
    generator.set_weights(distiller.generator.get_weights())
    images = generator(distiller.latent_noise(FLAGS.batch_size, 0)[:, 0], training=True)
    data = dict(data_mean=spec.mean, data_std=spec.std) if spec is not None else {}
    check = conventions.check_input_convention(distiller.teacher, images, FLAGS.teacher_input, input_map, **data)
    if check is None:
        logging.info("--teacher_input not checked: the teacher has no readable BatchNormalization layer")
        return {"checked": False, "reason": "the teacher has no readable BatchNormalization layer"}
    if check.suggestion:
        logging.warning(
            "--teacher_input=%s looks wrong for this teacher: generated images mapped by it are %.3g (KL) from "
            "the running statistics of its first BatchNorm layer, against %.3g with --teacher_input=%s; rerun "
            "with --teacher_input=%s unless you know the teacher's convention", FLAGS.teacher_input,
            check.mismatches[FLAGS.teacher_input], check.mismatches[check.suggestion], check.suggestion,
            check.suggestion)
    return {"checked": True, "batchnorm_mismatch": check.mismatches, "suggestion": check.suggestion}


def _warn_if_teacher_at_chance(teacher, test_data, spec):
    """Warns when the teacher does no better on held-out data than a constant prediction."""
    from dfad_tf import evaluation

    images, labels = test_data
    score = evaluation.model_score(teacher, images, labels, spec)
    at_chance, constant = evaluation.at_chance(score, labels, spec)
    if at_chance:
        logging.warning("the teacher scores %.3f (%s) on held-out --dataset=%s, no better than always predicting "
                        "one class (%.3f): check --teacher_input=%s and that --dataset is the teacher's",
                        score, evaluation.metric_name(spec), FLAGS.dataset, constant, FLAGS.teacher_input)


def _diverged(error, suggested_input=None):
    """The FlagError of a run that went NaN or diverged: which flag to change, and how.

    `suggested_input` is the convention the teacher's BatchNorm statistics
    suggested instead of --teacher_input, if any: images in the wrong range
    make the student diverge too.
    """
    kept = "the best student so far stays in --model_dir"
    if error.model == "teacher":
        return common.FlagError("teacher_input", f"{error.reason} at DFAD iteration {error.iteration}: the teacher's "
                                                 "outputs on generated images are not finite; check that "
                                                 f"--teacher_input={FLAGS.teacher_input} is what it takes ({kept})")
    if suggested_input:
        return common.FlagError("teacher_input", f"{error.reason} at DFAD iteration {error.iteration}: the student "
                                                 f"diverged on images in the wrong range; try --teacher_input="
                                                 f"{suggested_input} (see the warning above) ({kept})")
    return common.FlagError("student_lr", f"{error.reason} at DFAD iteration {error.iteration}: the student "
                                          f"diverged; try a lower --student_lr than {FLAGS.student_lr:g} ({kept})")


def _callbacks(model_dir, best, writes_files, test_data, spec):
    """The run's side jobs; a multi-worker run's non-chief workers only train and restore."""
    import keras

    from dfad_tf import callbacks

    backup = callbacks.TrainingBackup(os.path.join(model_dir, "backup"), write=writes_files)
    if not writes_files:
        return [callbacks.StopOnDivergence(), backup]
    if backup.exists:
        print(f"Resuming the interrupted run in {backup.backup_dir}")
    logs, samples = os.path.join(model_dir, "logs"), os.path.join(model_dir, "samples")
    pictures = []
    if spec is not None and spec.task == "segmentation":
        images, labels = test_data
        pictures.append(callbacks.SegmentationPictures(images[:8], labels[:8], logs, samples))
    return [
        callbacks.StopOnDivergence(),
        callbacks.GeneratedAgreement(seed=FLAGS.seed + 1),  # before `best`, which may monitor it
        best,
        callbacks.HistoryCSV(os.path.join(model_dir, "history.csv"), append=backup.exists),
        callbacks.TrainingCurves(os.path.join(model_dir, "history.csv"), os.path.join(model_dir, "curves.png"),
                                 FLAGS.iterations_per_epoch),
        callbacks.IterationScalars(logs),
        callbacks.GeneratedImages(logs, samples, seed=FLAGS.seed, class_names=spec and spec.class_names),
        *pictures,
        backup,  # last: an epoch is backed up once every other side job is done with it
    ]


def _strategy(model_dir):
    """The --strategy, made only after every check that needs no TensorFlow work has passed."""
    try:
        name = distribute.resolve_name(FLAGS.strategy)
    except distribute.StrategyError as error:
        raise common.FlagError("strategy", str(error)) from error
    problem = precision.unsupported(FLAGS.mixed_precision, name)
    if problem:
        raise common.FlagError("mixed_precision", problem)
    if name == "multi_worker" and not (FLAGS.teacher or fileio.exists(os.path.join(model_dir, "teacher.keras"))):
        raise common.FlagError("teacher", "a multi-worker run needs a trained teacher file; train one first "
                                          "(dfad-train-teacher) and pass it here")
    try:
        strategy = distribute.make_strategy(name)
    except distribute.StrategyError as error:
        raise common.FlagError("strategy", str(error)) from error
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise common.FlagError("batch_size", f"{FLAGS.batch_size} does not split evenly across the {replicas} "
                                             f"replicas of --strategy={name}; use a multiple of {replicas}")
    return strategy


def _export(model_dir, student, generator, replaced):
    """Exports the best student, unless it is the one already exported."""
    variants = [name for name in FLAGS.export if name in export.VARIANTS]
    if not replaced:
        variants = [v for v in variants if not fileio.exists(os.path.join(model_dir, export.tflite_filename(v)))]
    saved_model = "saved_model" in FLAGS.export and (
        replaced or not fileio.exists(os.path.join(model_dir, "student_savedmodel")))
    return export.export_student(student, model_dir, variants, saved_model=saved_model, generator=generator,
                                 calibration_images=FLAGS.calibration_images, int8_io=FLAGS.int8_io,
                                 seed=FLAGS.seed)


def _metrics(model_dir, distiller, student, best, history, seconds, test_data, spec):
    from dfad_tf import evaluation

    record = best.record
    iterations = len(history.epoch) * FLAGS.iterations_per_epoch
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
                          "epoch by labels (the paper's protocol), and without labels the last epoch or the epoch "
                          "of the best gen_agreement",
            "selection": f"student.keras is the student of the epoch with the best selection.monitor: val_{metric} "
                         f"(held-out {measure}) with labelled data, else gen_agreement (top-1 agreement with the "
                         "teacher on a fixed bank of generated images, per pixel for segmentation)",
        },
    }
    if test_data is not None:
        images, labels = test_data
        metrics[f"teacher_{metric}"] = evaluation.model_score(distiller.teacher, images, labels, spec)
        metrics[f"student_{metric}"] = evaluation.model_score(student, images, labels, spec)
        if record["monitor"] == f"val_{metric}":
            metrics[f"best_epoch_{metric}"] = record["value"]
        # Every epoch, those before a resume too.
        metrics["selections"] = evaluation.selections(fileio.read_csv(os.path.join(model_dir, "history.csv")), metric)
        if "float32" in FLAGS.export:
            logits = export.tflite_predict(os.path.join(model_dir, export.tflite_filename("float32")), images)
            metrics[f"student_tflite_{metric}"] = evaluation.score(logits, labels, spec)
    return metrics


def main(argv):
    del argv
    import keras

    from dfad_tf import callbacks, conventions, data, evaluation

    model_dir = FLAGS.model_dir
    has_data = FLAGS.dataset != common.NO_DATASET
    spec = data.spec(FLAGS.dataset) if has_data else None
    input_map = common.teacher_input_map(spec)
    strategy = _strategy(model_dir)  # first TensorFlow work: a multi-worker strategy must come before any
    writes_files = distribute.writes_files(strategy)
    test_data = None
    if has_data:
        images, labels = evaluation.arrays(common.labelled_dataset("test"))
        test_data = (conventions.adapt_images(images, *input_map), labels)
    sync_batchnorm = FLAGS.sync_batchnorm
    if sync_batchnorm is None:
        sync_batchnorm = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        distiller, settings = _build_distiller(model_dir, spec, input_map, sync_batchnorm)

    metrics_path = os.path.join(model_dir, "metrics.json")
    input_check = {}
    if writes_files:
        input_check = _check_teacher_input(distiller, spec, input_map)
        fileio.write_json(metrics_path, {**fileio.read_json(metrics_path, {}), "teacher_input_check": input_check})
    if test_data is not None:
        _warn_if_teacher_at_chance(distiller.teacher, test_data, spec)
    student_path = os.path.join(model_dir, "student.keras")
    monitor = f"val_{evaluation.metric_name(spec)}" if has_data else "gen_agreement"
    best = callbacks.BestStudentCheckpoint(student_path, monitor=monitor,
                                           extra_record={"config": configuration(settings)},
                                           generator_path=os.path.join(model_dir, "generator.keras"))
    started = time.time()
    try:
        history = distiller.fit(batch_size=FLAGS.batch_size, steps_per_epoch=FLAGS.iterations_per_epoch,
                                epochs=FLAGS.epochs, validation_data=test_data,
                                callbacks=_callbacks(model_dir, best, writes_files, test_data, spec),
                                verbose=common.verbosity())
    except callbacks.DivergedError as error:
        raise _diverged(error, input_check.get("suggestion")) from error
    seconds = time.time() - started
    if not writes_files:
        print(f"Worker finished {int(distiller.iteration.numpy())} iterations; the chief writes the results")
        return
    keras.mixed_precision.set_global_policy("float32")  # what is exported computes in float32
    if not best.improved:
        logging.warning("this run did not beat the student already in %s (%s %.4f); kept it",
                        model_dir, best.monitor, best.best)

    student = keras.saving.load_model(student_path)
    generator = keras.saving.load_model(os.path.join(model_dir, "generator.keras"))
    _export(model_dir, student, generator, replaced=best.improved)
    metrics = _metrics(model_dir, distiller, student, best, history, seconds, test_data, spec)
    fileio.write_json(metrics_path, {**fileio.read_json(metrics_path, {}), **metrics})
    summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in metrics
                        if key.startswith(("teacher_", "student_")) and isinstance(metrics[key], float))
    selection = metrics["selection"]
    print(f"Best student chosen by {selection['monitor']} = {selection['value']:.4f} (epoch {selection['epoch']})"
          f"{'; ' + summary if summary else ''}. Results in {metrics_path}")


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()
