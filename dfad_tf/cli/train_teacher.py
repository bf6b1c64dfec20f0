"""Train a teacher classifier or segmentation model on a labelled dataset.

Leaves MODEL_DIR/teacher.keras and MODEL_DIR/metrics.json (teacher_accuracy,
or teacher_miou for segmentation, on the held-out split). A teacher already in
MODEL_DIR is only replaced by a better one.

Example:
  dfad-train-teacher --dataset=digits --model_dir=runs/digits_teacher
"""

from absl import flags

from dfad_tf import run as library
from dfad_tf.cli import common

for name in common.TEACHER_FIELDS:
    flags.declare_key_flag(name)  # --help lists these shared flags too


def main(argv):
    del argv
    teacher_config = common.teacher_config()
    with common.flag_errors(common.TEACHER_FIELDS):
        library.train_teacher(teacher_config, verbose=common.verbosity())


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()
