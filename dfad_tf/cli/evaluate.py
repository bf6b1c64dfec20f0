"""Measure a classifier's top-1 accuracy, or a segmentation model's mean IoU, on a held-out split.

Takes a .keras/.h5 file, a SavedModel directory or a .tflite file (run with
ai_edge_litert) and prints one JSON line: {"model", "dataset", "split",
"accuracy" (or "miou"), "examples"}.

Example:
  dfad-evaluate --model=runs/digits/student.tflite --dataset=digits
"""

import json

from absl import flags

from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("dataset", "data_dir"):
    flags.declare_key_flag(name)  # --help lists these shared flags too

flags.DEFINE_string("model", None, "Model to evaluate: .keras, .h5, .tflite file or SavedModel directory.")
flags.DEFINE_enum("split", "test", ["train", "test"], "Split of --dataset to evaluate on.")
flags.DEFINE_bool("allow_unsafe_model", False,
                  "Load a .keras file holding Python code, or a SavedModel that could run operations other than "
                  "tensor computation (file access, printing, Python callbacks). Only for files you trust.")


def main(argv):
    del argv
    import os

    from dfad_tf import data, evaluation, export, model_files, models

    images, labels = evaluation.arrays(common.labelled_dataset(FLAGS.split))
    spec = data.spec(FLAGS.dataset)
    if FLAGS.model.endswith(".tflite"):
        if not os.path.isfile(FLAGS.model):
            raise common.FlagError("model", f"{FLAGS.model}: no such file")
        try:
            logits = export.tflite_predict(FLAGS.model, images)
        except (ValueError, RuntimeError) as error:
            raise common.FlagError("model", f"{FLAGS.model}: cannot run as TFLite ({error})") from error
    else:
        try:
            model = model_files.load_model(FLAGS.model, safe_mode=not FLAGS.allow_unsafe_model)
        except model_files.ModelFileError as error:
            hint = "; pass --allow_unsafe_model if you trust it" if error.unsafe else ""
            raise common.FlagError("model", f"{error}{hint}") from error
        if not models.takes(model, images.shape[1:]):
            raise common.FlagError("model", f"takes images of shape {tuple(model.input_shape[1:])} but "
                                            f"--dataset={FLAGS.dataset} has {images.shape[1:]}")
        logits = evaluation.predict(model, images, batch_size=32)
    if logits.shape[-1] != spec.num_classes or logits.ndim != labels.ndim + 1:
        raise common.FlagError("model", f"outputs shape {logits.shape[1:]} but --dataset={FLAGS.dataset} is "
                                        f"{spec.task} into {spec.num_classes} classes")
    print(json.dumps({"model": FLAGS.model, "dataset": FLAGS.dataset, "split": FLAGS.split,
                      evaluation.metric_name(spec): evaluation.score(logits, labels, spec),
                      "examples": int(len(labels))}))


def run():
    common.run(main, required=["model"])


if __name__ == "__main__":
    run()
