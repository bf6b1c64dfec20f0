"""The frozen configuration of a run: what `dfad_tf.run` needs, built once and recorded beside the results.

A `DistillConfig` holds everything a distillation depends on, in parts
(data, teacher, student, generator, schedule, objective, precision, export);
a `TeacherConfig` what training a teacher depends on. Both are frozen
dataclasses: a variant of a run is `dataclasses.replace(config, ...)` (nested
parts likewise), never a mutation. `dfad_tf.run.distill` writes the config into
the run folder as `run_config.json` (`save`); `dfad-export --run_dir` and
`dfad-evaluate --run_dir` read it back (`load`), so the run's dataset and
teacher input convention are never repeated and cannot disagree.

Bad values are reported by `ConfigError`, naming the field by its dotted path
(e.g. `teacher.input`), which the command line maps back to its flag.

Example:
```python
from dfad_tf import config, run

cfg = config.DistillConfig(model_dir="runs/digits", teacher=config.TeacherSource(path="teacher.keras"),
                           schedule=config.ScheduleConfig(epochs=2, iterations_per_epoch=5))
result = run.distill(cfg)
```
"""

import dataclasses
import os

from dfad_tf import fileio

RUN_CONFIG = "run_config.json"  # the file name of a run folder's configuration
NO_DATASET = "none"  # `DataConfig.dataset` of a run with no labelled data at all


class ConfigError(ValueError):
    """A configuration value that cannot work, named by its dotted field path.

    Args:
        field: the field, e.g. "teacher.path" or "schedule.batch_size".
        message: what is wrong and what would be right.
        unlock: a boolean field that would allow it (e.g. "teacher.allow_unsafe"), or None.
    """

    def __init__(self, field, message, unlock=None):
        super().__init__(f"{field}: {message}" + (f"; set {unlock} if you trust it" if unlock else ""))
        self.field = field
        self.message = message
        self.unlock = unlock


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Labelled data, used only to train a teacher and to measure students.

    Args:
        dataset: a key of `data.SOURCES`, or "none" to distill without any labelled data.
        data_dir: the dataset's folder (camvid, nyuv2) or the tensorflow_datasets data directory.
    """

    dataset: str = "digits"
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class TeacherTraining:
    """How a teacher is trained from scratch (`teacher.train_teacher`'s recipe).

    Args:
        model: a registered classifier or segmentation model.
        width: width multiplier.
        output_stride: segmentation models: 8 or 16.
        backbone_weights: segmentation models: a local backbone weights file to start from.
        epochs, batch_size, learning_rate, weight_decay, label_smoothing, augment: SGD training.
        decay_epochs: epochs at which the learning rate is multiplied by 0.1; empty: cosine decay.
    """

    model: str = "lenet5"
    width: float = 1.0
    output_stride: int = 16
    backbone_weights: str | None = None
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True
    decay_epochs: tuple = ()


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """A teacher-training run: `run.train_teacher`.

    Args:
        model_dir: where teacher.keras and metrics.json are written.
        data: the labelled dataset to train on.
        training: the training recipe.
        seed: random seed of weights, shuffling and augmentation.
    """

    model_dir: str
    data: DataConfig = DataConfig()
    training: TeacherTraining = TeacherTraining()
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TeacherSource:
    """The teacher of a distillation.

    Args:
        path: a .keras/.h5 file or SavedModel directory; None: MODEL_DIR/teacher.keras, trained
            first by `training` if missing.
        input: its input convention (`conventions.CONVENTIONS`).
        input_mean, input_std: per-channel mean and std for input="mean_std".
        allow_unsafe: load a file holding Python code or non-tensor operations.
        training: the recipe of a teacher trained here.
    """

    path: str | None = None
    input: str = "normalized"
    input_mean: tuple | None = None
    input_std: tuple | None = None
    allow_unsafe: bool = False
    training: TeacherTraining = TeacherTraining()


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """The student and its SGD optimizer."""

    model: str = "lenet5_half"
    width: float = 1.0
    output_stride: int = 16
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """The generator and its Adam optimizer.

    Args:
        fixed: a generator.keras of an earlier run, trained no further (no generation stage).
    """

    model: str = "generator_a"
    width: int = 64
    latent_dim: int = 256
    learning_rate: float = 1e-3
    fixed: str | None = None


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """How long and on what batches: DFAD iterations of k imitation steps and one generation step.

    Args:
        image_size: (height, width) generated for a teacher taking any size; None: the dataset's crop.
        lr_decay_epochs, lr_decay_factor: step decay of both learning rates.
    """

    batch_size: int = 512
    imitation_steps: int = 5
    iterations_per_epoch: int = 50
    epochs: int = 40
    lr_decay_epochs: tuple = ()
    lr_decay_factor: float = 0.1
    image_size: tuple | None = None


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """What student and generator optimise: a named recipe (`recipes.RECIPES`) and its parts.

    Each part left None comes from `recipe` (for the run's teacher: see
    `recipes.Recipe`); given, it overrides that part alone. The run folder's
    run_config.json records every part as the run used it.

    Args:
        recipe: "robust" (the default, for any teacher) or "paper" (DFAD as published).
        loss: the discrepancy (`losses.DISCREPANCIES`).
        standardize_logits: compare standardized logit vectors.
        generator_loss_weights: weights of the generator's terms (`objectives.TERMS`).
        replay_memory: images kept in the replay memory (0: none).
        clip_pixels: clip generated images to the real pixel range of the teacher's convention.
        generate_pixels: the generator's tanh is read as pixels from black to white; False: the paper's
            output (Generator-A standardises each batch to the dataset's mean and standard deviation).
        generator_average: momentum of the average of the generator's weights that makes half of the
            student's images (0: none).
        student_average: momentum of the average of the student's weights that the run keeps (0: none).
        student_training_in_generator_step: the generator's step runs the student in training mode
            (batch statistics), as DFAD does; False: in inference mode.
    """

    recipe: str = "robust"
    loss: str = "mae"
    standardize_logits: bool | None = None
    generator_loss_weights: dict | None = None
    replay_memory: int | None = None
    clip_pixels: bool | None = None
    generate_pixels: bool | None = None
    generator_average: float | None = None
    student_average: float | None = None
    student_training_in_generator_step: bool | None = None


@dataclasses.dataclass(frozen=True)
class PrecisionConfig:
    """Where and in what precision the run computes.

    Args:
        strategy: `distribute.STRATEGIES`.
        sync_batchnorm: synchronize the generator's BatchNorm across replicas (None: when several).
        mixed_precision: `precision.POLICIES`.
        jit_compile: compile each DFAD iteration with XLA.
    """

    strategy: str = "auto"
    sync_batchnorm: bool | None = None
    mixed_precision: str = "float32"
    jit_compile: bool = False


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What a distillation exports from its best student.

    Args:
        formats: "saved_model" and TFLite variants (`export.VARIANTS`).
        calibration_images: generated images calibrating the int8 model.
        int8_io: int8 input and output tensors for the int8 model.
    """

    formats: tuple = ("saved_model", "float32")
    calibration_images: int = 512
    int8_io: bool = False


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A whole distillation: `run.distill`. Every part has the defaults of `dfad-distill`."""

    model_dir: str
    data: DataConfig = DataConfig()
    teacher: TeacherSource = TeacherSource()
    student: StudentConfig = StudentConfig()
    generator: GeneratorConfig = GeneratorConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    precision: PrecisionConfig = PrecisionConfig()
    export: ExportConfig = ExportConfig()
    seed: int = 0

    @property
    def has_data(self):
        return self.data.dataset != NO_DATASET


def replace(config, field, value):
    """`config` with the field at the dotted path `field` (e.g. "schedule.epochs") set to `value`."""
    name, _, rest = field.partition(".")
    if rest:
        value = replace(getattr(config, name), rest, value)
    return dataclasses.replace(config, **{name: value})


def to_dict(config):
    """`config` as plain JSON values (nested dicts, lists)."""
    return dataclasses.asdict(config)


def from_dict(cls, values):
    """The `cls` config of `to_dict`'s output; a ConfigError naming an unknown field."""
    return _from_dict(cls, values, "")


def _from_dict(cls, values, prefix):
    fields = {field.name: field for field in dataclasses.fields(cls)}
    arguments = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(prefix + name, f"unknown field of {cls.__name__}")
        default = fields[name].default
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value, f"{prefix}{name}.")
        elif isinstance(value, list):
            value = tuple(value)
        arguments[name] = value
    return cls(**arguments)


def save(config, run_dir):
    """Writes `config` into `run_dir` as run_config.json, atomically."""
    fileio.write_json(os.path.join(run_dir, RUN_CONFIG), to_dict(config))


# Recipe parts added after runs were recorded, and what a run recorded before them did: such a run resumes
# and exports as it ran (its backup holds the generator it had).
PARTS_BEFORE_THEY_EXISTED = {"student_training_in_generator_step": True, "generate_pixels": False}


def load(run_dir, cls=DistillConfig):
    """The config recorded in `run_dir`, or None if there is none."""
    values = fileio.read_json(os.path.join(run_dir, RUN_CONFIG), None)
    if values is None:
        return None
    if cls is DistillConfig and "objective" in values:
        values["objective"] = {**PARTS_BEFORE_THEY_EXISTED, **values["objective"]}
    return from_dict(cls, values)
