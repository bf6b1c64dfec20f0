"""Flags shared by several binaries, and the one-line error convention."""

import contextlib
import functools
import os
import sys

from absl import app, flags, logging as absl_logging

from dfad_tf import config, data, fileio, models

FLAGS = flags.FLAGS

NO_DATASET = config.NO_DATASET

flags.DEFINE_enum("dataset", "digits", sorted(data.SOURCES) + [NO_DATASET],
                  "Labelled dataset for training a teacher and for held-out evaluation. "
                  "'digits' is scikit-learn's bundled handwritten digits (offline) and 'shapes' a procedural "
                  "segmentation set (offline); camvid and nyuv2 (segmentation) read a local folder given by "
                  "--data_dir; the others load through tensorflow_datasets from --data_dir. Distillation "
                  "itself never reads its images; "
                  f"'{NO_DATASET}' distills with no labelled data at all (needs --teacher).")
flags.DEFINE_string("data_dir", None,
                     "The folder of --dataset=camvid or nyuv2 (layouts in README), or the tensorflow_datasets data "
                     "directory (default: tfds's own, ~/tensorflow_datasets).")
flags.DEFINE_string("model_dir", None,
                     "Output directory of the run (required by train_teacher and distill); created if missing.")
flags.register_validator("model_dir", lambda path: path is None or not fileio.is_file(path),
                         message="--model_dir names an existing file; give a folder (a new one, or an earlier run's)")
flags.DEFINE_string("config", None, "A configuration shipped with dfad_tf, by name: the flagfile flags/NAME.cfg "
                                    "(e.g. digits, cifar10, teacher_digits), also after a plain pip install.")
flags.DEFINE_string("run_dir", None, "dfad-export and dfad-evaluate: a distill --model_dir, whose student, generator, "
                                     "--dataset and --teacher_input (its run_config.json) they take.")
flags.DEFINE_integer("seed", 0, "Random seed for weights, noise, shuffling and augmentation.")

flags.DEFINE_string("teacher", None,
                    "Teacher: a .keras or .h5 file, or a SavedModel directory. For distill, if not given, "
                    "MODEL_DIR/teacher.keras is used, and trained on --dataset first if missing "
                    "(see the --teacher_* flags); for export, the run directory's teacher.keras.")
flags.DEFINE_bool("allow_unsafe_teacher", False,
                  "Load a .keras teacher even if it holds Python code (Lambda layers), which Keras's "
                  "safe mode refuses, or a SavedModel teacher that could run operations other than tensor "
                  "computation (file access, printing, Python callbacks). Only for files from a source you trust.")
flags.DEFINE_enum("teacher_input", "normalized", ["normalized", "unit", "symmetric", "byte", "mean_std"],
                  "Input convention of the --teacher file: normalized (the dataset's own mean/std "
                  "normalisation, as teachers trained by dfad_tf expect), unit ([0, 1] pixels), symmetric "
                  "([-1, 1]), byte ([0, 255]) or mean_std ((pixel - --teacher_input_mean) / "
                  "--teacher_input_std, pixels in [0, 1]). Generated and evaluation images are mapped into it, "
                  "and the student takes the same inputs as the teacher. dfad-distill warns when a teacher with "
                  "BatchNorm layers looks trained on another convention (metrics.json: teacher_input_check).")
flags.DEFINE_list("teacher_input_mean", None, "Per-channel mean for --teacher_input=mean_std, e.g. 0.485,0.456,0.406.")
flags.DEFINE_list("teacher_input_std", None, "Per-channel std for --teacher_input=mean_std, e.g. 0.229,0.224,0.225.")
flags.DEFINE_list("image_size", None,
                  "HEIGHT,WIDTH for a teacher that takes images of any size (segmentation models): of the "
                  "generated images in distill (default: the training crop of --dataset, 128,128 for camvid and "
                  "nyuv2), of the image whose multiply-adds inspect counts (default: 256,341, the paper's "
                  "CamVid and NYUv2 evaluation size).")
flags.register_validator("image_size", lambda values: values is None or (
    len(values) == 2 and all(v.isdigit() and int(v) > 0 for v in values)),
    message="--image_size must be HEIGHT,WIDTH in pixels, e.g. 128,128")
flags.DEFINE_bool("int8_io", False, "Give the full-integer int8 TFLite model int8 input and output tensors "
                                    "(default: float, quantized inside the model).")
flags.DEFINE_integer("calibration_images", 512,
                     "Generated images that calibrate the activation ranges of the int8 TFLite model.",
                     lower_bound=1)

flags.DEFINE_enum("teacher_model", "lenet5", sorted(models.CLASSIFIERS) + sorted(models.SEGMENTERS),
                  "Architecture of a teacher trained from scratch: a classifier, or a DeepLabV3 segmentation "
                  "model for a segmentation --dataset (deeplabv3_resnet50 is the paper's).")
flags.DEFINE_float("teacher_width", 1.0, "Width multiplier of a teacher trained from scratch (a scaled copy; for "
                                         "deeplabv3_mobilenet_v2, the MobileNet's alpha and the head's width).",
                   lower_bound=0.01)
flags.DEFINE_string("teacher_backbone_weights", None,
                    "Segmentation teachers: a local weights file of the backbone to start from (the paper's teacher "
                    "starts from ImageNet weights), as keras.applications saves it without its top, e.g. "
                    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5. Default: from scratch.")
flags.DEFINE_enum("output_stride", "16", ["8", "16"],
                  "Segmentation models (teacher and student): input size over the size of the backbone's "
                  "features; 8 is finer and slower (dilated convolutions).")
flags.DEFINE_integer("teacher_epochs", 30, "Epochs of teacher training.", lower_bound=1)
flags.DEFINE_integer("teacher_batch_size", 64, "Batch size of teacher training.", lower_bound=1)
flags.DEFINE_float("teacher_lr", 0.05, "Initial SGD learning rate of teacher training (cosine decay to 0).")
flags.DEFINE_float("teacher_weight_decay", 5e-4, "SGD weight decay of teacher training.", lower_bound=0.0)
flags.DEFINE_float("teacher_label_smoothing", 0.0,
                   "Label smoothing of teacher training. A smoothed teacher has bounded logits, which keeps "
                   "DFAD's L1 discrepancy stable (flags/digits.cfg uses 0.1).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("teacher_augment", True, "Augment teacher training: random shifts and rotations for digits and "
                                           "MNIST, random crops with padding and horizontal flips for CIFAR and "
                                           "Caltech101.")
flags.DEFINE_list("teacher_lr_decay_epochs", [], "Epochs at which the teacher's learning rate is multiplied by 0.1 "
                                                 "(e.g. 100,150); empty: cosine decay to 0.")


class FlagError(Exception):
    """Bad input attributable to one flag; printed as one line naming it.

    Args:
        flag: the flag's name, without dashes.
        message: what is wrong and what would be right.

    Example:
    >>> raise FlagError("teacher", "runs/x.keras: no such file")
    """

    def __init__(self, flag, message):
        super().__init__(f"--{flag}: {message}")
        self.flag = flag


def require_positive(*names):
    """Registers validators: each float flag in `names` must be > 0."""
    for name in names:
        flags.register_validator(name, lambda value: value is not None and value > 0,
                                 message=f"--{name} must be a number greater than 0")


def require_epoch_list(*names):
    """Registers validators: each list flag in `names` holds positive integers (epochs)."""
    for name in names:
        flags.register_validator(name, lambda values: all(v.isdigit() and int(v) > 0 for v in values),
                                 message=f"--{name} must be a comma-separated list of positive integers, e.g. 100,200")


require_positive("teacher_lr")
require_epoch_list("teacher_lr_decay_epochs")


def report_errors(main):
    """Wraps an absl `main` so that a `FlagError` ends it with one line on stderr and exit code 2.

    Every binary checks its inputs before writing anything, so an error leaves
    earlier results in --model_dir untouched.
    """

    @functools.wraps(main)
    def checked_main(argv):
        if not FLAGS["verbosity"].present:  # TensorFlow's INFO lines drown ours; --verbosity=0 shows them
            absl_logging.set_verbosity(absl_logging.WARNING)
        try:
            if len(argv) > 1:
                raise FlagError(argv[1].lstrip("-"), f"unexpected argument {argv[1]!r}; every input is a --flag=value")
            return main(argv)
        except FlagError as error:
            print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
            sys.exit(2)

    return checked_main


def config_path(name):
    """The flagfile of the configuration `name` shipped with dfad_tf (`--config=NAME`).

    Installed, the configurations are the package data dfad_tf/configs/; in a
    checkout, they are flags/ beside the package (the same files).
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "flags")):
        if os.path.isdir(folder):
            path = os.path.join(folder, f"{name}.cfg")
            if not os.path.isfile(path):
                names = sorted(f[:-len(".cfg")] for f in os.listdir(folder) if f.endswith(".cfg"))
                raise FlagError("config", f"no configuration {name!r}; choose one of: {', '.join(names)}")
            return path
    raise FlagError("config", "this installation of dfad_tf has no configurations")


def expand_flagfiles(argv, including=None):
    """`argv` with every --config=NAME and --flagfile=PATH replaced by the flags in that file.

    A --flagfile inside a flagfile is found relative to that file (absl's own
    reading would take it relative to the working directory).
    """
    expanded = []
    for arg in argv:
        name, _, value = arg.partition("=")
        if name.lstrip("-") not in ("config", "flagfile") or not name.startswith("-"):
            expanded.append(arg)
            continue
        path = config_path(value) if name.lstrip("-") == "config" else value
        if including is not None and not os.path.isabs(path):
            path = os.path.join(os.path.dirname(including), path)
        if not os.path.isfile(path):
            raise FlagError("flagfile", f"{path}: no such file")
        with open(path) as file:
            lines = [line.strip() for line in file]
        expanded.extend(expand_flagfiles([line for line in lines if line and not line.startswith(("#", "//"))],
                                         including=path))
    return expanded


def _show_in_help(main):
    """Makes --help print the binary's docstring and key flags also when started by a console script.

    absl's --help shows `__main__`'s docstring and the flags filed under
    sys.argv[0]; a console script such as `dfad-distill` is a `__main__`
    without either.
    """
    module, entry = sys.modules[main.__module__], sys.modules["__main__"]
    if module is entry:
        return
    entry.__doc__ = entry.__doc__ or module.__doc__
    for flag in FLAGS.get_key_flags_for_module(module.__name__):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main, required=()):
    """`app.run` for a binary's `main`: `report_errors`, `required` flags, `expand_flagfiles`, its flags in --help."""
    for name in required:
        flags.mark_flag_as_required(name)
    _show_in_help(main)
    try:
        argv = expand_flagfiles(sys.argv)
    except FlagError as error:
        print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
        sys.exit(2)
    app.run(report_errors(main), argv=argv)


def integers(values):
    """A list flag of integers as a tuple."""
    return tuple(int(v) for v in values)


def _floats(values):
    return None if values is None else tuple(float(v) for v in values)


# The converters of flag values whose config field has another type (see `from_flags`).
CONVERTERS = {"output_stride": int, "teacher_lr_decay_epochs": integers, "image_size": lambda v: v and integers(v),
              "teacher_input_mean": _floats, "teacher_input_std": _floats, "export": tuple}

# teacher-training flag: its `config.TeacherTraining` field
TEACHER_TRAINING_FIELDS = {
    "teacher_model": "model", "teacher_width": "width", "output_stride": "output_stride",
    "teacher_backbone_weights": "backbone_weights", "teacher_epochs": "epochs",
    "teacher_batch_size": "batch_size", "teacher_lr": "learning_rate", "teacher_weight_decay": "weight_decay",
    "teacher_label_smoothing": "label_smoothing", "teacher_augment": "augment",
    "teacher_lr_decay_epochs": "decay_epochs",
}
# flag: its `config.TeacherConfig` field
TEACHER_FIELDS = {"model_dir": "model_dir", "seed": "seed", "dataset": "data.dataset", "data_dir": "data.data_dir",
                  **{flag: f"training.{field}" for flag, field in TEACHER_TRAINING_FIELDS.items()}}


def from_flags(base, fields, converters=None, only_present=False):
    """`base` (a frozen config) with the values of the flags in `fields` (flag: dotted field path).

    Args:
        base: the config whose fields the flags replace.
        fields: flag name: the field it sets.
        converters: flag name: a function from the flag's value to the field's (besides `CONVERTERS`).
        only_present: replace only the fields of flags given on the command line (or in a flagfile).

    Raises:
        config.ConfigError: a flag value cannot be converted (naming the field).
    """
    converters = {**CONVERTERS, **(converters or {})}
    for flag, field in fields.items():
        if only_present and not FLAGS[flag].present:
            continue
        value = FLAGS[flag].value
        try:
            value = converters.get(flag, lambda v: v)(value)
        except ValueError as error:
            raise config.ConfigError(field, f"cannot read {','.join(value)} ({error})") from error
        base = config.replace(base, field, value)
    return base


@contextlib.contextmanager
def flag_errors(fields):
    """Turns a `config.ConfigError` into the one-line `FlagError` naming the flag that sets its field.

    Args:
        fields: flag name: the field it sets, as for `from_flags`.
    """
    try:
        yield
    except config.ConfigError as error:
        flag_of = {field: flag for flag, field in fields.items()}
        hint = f"; pass --{flag_of.get(error.unlock, error.unlock)} if you trust it" if error.unlock else ""
        raise FlagError(flag_of.get(error.field, error.field), error.message + hint) from error


# flag: the field of the `DataConfig` and `TeacherSource` it sets, for binaries that read a run folder
RUN_SETTING_FIELDS = {"dataset": "data.dataset", "data_dir": "data.data_dir", "teacher_input": "teacher.input",
                      "teacher_input_mean": "teacher.input_mean", "teacher_input_std": "teacher.input_std",
                      "teacher": "teacher.path", "allow_unsafe_teacher": "teacher.allow_unsafe"}


def run_setting():
    """`(data_config, teacher_source)` of the flags for `run.export` and `run.evaluate`.

    With a --run_dir holding a run_config.json, the run's, changed only by the
    flags given (which `run` refuses where they disagree with the run).
    """
    recorded = config.load(FLAGS.run_dir) if FLAGS.run_dir else None
    with flag_errors(RUN_SETTING_FIELDS):
        setting = from_flags(recorded or config.DistillConfig(model_dir=""), RUN_SETTING_FIELDS,
                             only_present=recorded is not None)
    return setting.data, setting.teacher


def teacher_config():
    """The `TeacherConfig` of the flags."""
    with flag_errors(TEACHER_FIELDS):
        return from_flags(config.TeacherConfig(model_dir=FLAGS.model_dir), TEACHER_FIELDS)


def verbosity():
    """A live progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2
