"""Measure a classifier's top-1 accuracy, or a segmentation model's mean IoU, on a held-out split.

Takes a .keras/.h5 file, a SavedModel directory or a .tflite file (run with
ai_edge_litert) and prints one JSON line: {"model", "dataset", "split",
"accuracy" (or "miou"), "examples"}. The dataset's images are given in the
--teacher_input convention, which a student shares with its teacher; with
--run_dir, the run's student, dataset and convention (its run_config.json).

Example:
  dfad-evaluate --run_dir=runs/digits
  dfad-evaluate --model=runs/digits/student.tflite --dataset=digits
"""

import json

from absl import flags

from dfad_tf import run as library
from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("run_dir", "dataset", "data_dir", "teacher_input", "teacher_input_mean", "teacher_input_std"):
    flags.declare_key_flag(name)  # --help lists these shared flags too

flags.DEFINE_string("model", None, "Model to evaluate: .keras, .h5, .tflite file or SavedModel directory "
                                   "(default: RUN_DIR/student.keras).")
flags.DEFINE_enum("split", "test", ["train", "test"], "Split of --dataset to evaluate on.")
flags.DEFINE_bool("allow_unsafe_model", False,
                  "Load a .keras file holding Python code, or a SavedModel that could run operations other than "
                  "tensor computation (file access, printing, Python callbacks). Only for files you trust.")

FIELDS = {**common.RUN_SETTING_FIELDS, "model": "model_path", "allow_unsafe_model": "allow_unsafe"}


def main(argv):
    del argv
    data_config, teacher = common.run_setting()
    with common.flag_errors(FIELDS):
        if not (FLAGS.model or FLAGS.run_dir):
            raise library.ConfigError("model_path", "give the model to evaluate, or --run_dir")
        result = library.evaluate(FLAGS.model, FLAGS.run_dir, FLAGS.split, FLAGS.allow_unsafe_model,
                                  data_config=data_config, teacher=teacher)
    print(json.dumps(result))


def run():
    common.run(main)


if __name__ == "__main__":
    run()
