"""The distillation flags (of dfad-distill and dfad-reproduce), and the `DistillConfig` they make."""

import dataclasses

from absl import flags

from dfad_tf import config, distribute, export, losses, models, objectives, precision, recipes
from dfad_tf.cli import common

FLAGS = flags.FLAGS

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
                  "pixels clipped to the real range, the student in inference mode in the generator's step, and a "
                  "BatchNorm prior and a generator making pixels when the teacher's BatchNorm layers can be read, "
                  "else a smoothness prior, "
                  "standardized logits and an averaged generator) or paper (DFAD exactly as published). "
                  "--standardize_logits, --replay_memory, --clip_pixels, --generate_pixels, --generator_average, "
                  "--student_average, "
                  "--student_training_in_generator_step and --generator_loss_weights override single parts of it.")
flags.DEFINE_bool("standardize_logits", None,
                  "Standardize each teacher and student logit vector (mean 0, std 1) before --loss, so that the "
                  "discrepancy ignores logit scale; the student then matches the teacher's logits up to shift and "
                  "scale (same argmax). Default: from --recipe (robust: on unless the BatchNorm prior is; paper: off).")
flags.DEFINE_integer("replay_memory", None,
                     "Images kept in a replay memory, a uniform sample of all images generated so far; every "
                     "imitation step also trains the student on as many images drawn from it, so it does not "
                     "forget what earlier generators taught it (0: none). Default: from --recipe (0 in both).",
                     lower_bound=0)
flags.DEFINE_bool("clip_pixels", None,
                  "Clip generated images to the range real pixels have in the teacher's input convention (black to "
                  "white), so that the generator cannot invent pixels no teacher was trained on. Default: from "
                  "--recipe (robust: on; paper: off).")
flags.DEFINE_bool("generate_pixels", None,
                  "The generator ends at its tanh, read as pixels from black (-1) to white (1) and mapped to the "
                  "teacher's input convention, so that the brightness and contrast of its images are its own to "
                  "learn; off, the paper's output (Generator-A standardises every batch to the dataset's mean and "
                  "standard deviation). Default: from --recipe (robust: on when the BatchNorm prior is, which then "
                  "sets the images' brightness and contrast; paper: off).")
flags.DEFINE_float("generator_average", None,
                   "Momentum of an average of the generator's weights over its last iterations (about "
                   "1 / (1 - momentum) of them), updated after every generation step: every imitation step makes "
                   "half of its images with it, so the student also learns where the generator has been, not only "
                   "where it is (0: none). Default: from --recipe (robust: 0.99, unless the BatchNorm prior is on; "
                   "paper: 0).", lower_bound=0.0, upper_bound=0.9999)
flags.DEFINE_float("student_average", None,
                   "Momentum of an average of the student's weights over its last iterations (about "
                   "1 / (1 - momentum) of them), updated after every iteration: the student measured each epoch, "
                   "kept and exported, steadier than the one trained (0: none, keep the trained student). "
                   "Default: from --recipe (robust: 0.998 for a student with BatchNorm layers, such as "
                   "the MobileNets and ResNets, 0 for one without; paper: 0).", lower_bound=0.0, upper_bound=0.9999)
flags.DEFINE_bool("student_training_in_generator_step", None,
                  "Run the student in training mode (its BatchNorm layers normalising by the batch's statistics) "
                  "when the generator's step measures the discrepancy, as DFAD does; off, in inference mode (their "
                  "moving statistics), so that the generator cannot win with near-uniform images whose contrast "
                  "the student's batch statistics magnify. Default: from --recipe (robust: off; paper: on).")
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
                  "compute capability 8.0+, processors with avx512_bf16/amx_bf16), mixed_float16 (GPUs of "
                  "compute capability 7.0+; both optimizers scale the loss), or auto (mixed_bfloat16 where it "
                  "runs, but float32 where the BatchNorm prior is on or bfloat16 does not run; metrics.json "
                  "records which). Saved students are float32.")

common.require_positive("student_lr", "generator_lr", "lr_decay_factor")
flags.DEFINE_list("generator_loss_weights", None,
                  "What the generator optimises, as TERM=WEIGHT pairs over the terms adversarial (DFAD's "
                  "discrepancy), batchnorm and batchnorm_kl (match the teacher's BatchNorm statistics, a prior as in "
                  "DeepInversion and DFQ; batchnorm_kl is the same in size for any teacher), one_hot, activation "
                  "and balance (DAFL's terms), smoothness (an image prior needing only the teacher's outputs). "
                  "Default: from --recipe (paper: adversarial=1; robust: adversarial=1, plus batchnorm=1 when "
                  "the teacher's BatchNorm layers can be read, else smoothness=1). DAFL is "
                  "one_hot=1,activation=0.1,balance=5.")
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


# flag: the DistillConfig field it sets
FIELDS = {
    "model_dir": "model_dir", "seed": "seed", "dataset": "data.dataset", "data_dir": "data.data_dir",
    "teacher": "teacher.path", "teacher_input": "teacher.input", "teacher_input_mean": "teacher.input_mean",
    "teacher_input_std": "teacher.input_std", "allow_unsafe_teacher": "teacher.allow_unsafe",
    **{flag: f"teacher.training.{field}" for flag, field in common.TEACHER_TRAINING_FIELDS.items()},
    "student": "student.model", "student_width": "student.width", "student_lr": "student.learning_rate",
    "student_momentum": "student.momentum", "student_weight_decay": "student.weight_decay",
    "generator": "generator.model", "generator_width": "generator.width", "latent_dim": "generator.latent_dim",
    "generator_lr": "generator.learning_rate", "fixed_generator": "generator.fixed",
    "batch_size": "schedule.batch_size", "imitation_steps": "schedule.imitation_steps",
    "iterations_per_epoch": "schedule.iterations_per_epoch", "epochs": "schedule.epochs",
    "lr_decay_epochs": "schedule.lr_decay_epochs", "lr_decay_factor": "schedule.lr_decay_factor",
    "image_size": "schedule.image_size",
    "recipe": "objective.recipe", "loss": "objective.loss", "standardize_logits": "objective.standardize_logits",
    "generator_loss_weights": "objective.generator_loss_weights", "replay_memory": "objective.replay_memory",
    "clip_pixels": "objective.clip_pixels", "generate_pixels": "objective.generate_pixels",
    "generator_average": "objective.generator_average",
    "student_average": "objective.student_average",
    "student_training_in_generator_step": "objective.student_training_in_generator_step",
    "strategy": "precision.strategy", "sync_batchnorm": "precision.sync_batchnorm",
    "mixed_precision": "precision.mixed_precision", "jit_compile": "precision.jit_compile",
    "export": "export.formats", "calibration_images": "export.calibration_images", "int8_io": "export.int8_io",
}
CONVERTERS = {"generator_loss_weights": lambda pairs: pairs and _parse_weights(pairs),
              "lr_decay_epochs": common.integers}


def distill_config():
    """The `DistillConfig` of the flags.

    A --model_dir that holds a run (its run_config.json) is the base: flags
    given on the command line change it, the others keep the run's values, so
    resuming needs no flag repeated; a --recipe given anew also fills the
    parts of it not given (--standardize_logits, ...) anew.
    """
    recorded = config.load(FLAGS.model_dir)
    base = recorded or config.DistillConfig(model_dir=FLAGS.model_dir)
    if recorded is not None and FLAGS["recipe"].present:  # the recorded parts are the old recipe's
        base = dataclasses.replace(base, objective=dataclasses.replace(base.objective,
                                                                       **dict.fromkeys(recipes.PARTS)))
    with common.flag_errors(FIELDS):
        built = common.from_flags(base, FIELDS, CONVERTERS, only_present=recorded is not None)
    # --output_stride is the student's as well as the teacher's
    return config.replace(built, "student.output_stride", built.teacher.training.output_stride)


def flag_errors():
    """`common.flag_errors` for the distillation flags."""
    return common.flag_errors(FIELDS)
