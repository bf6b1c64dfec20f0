"""Describe a teacher, and what each registered student would cost for it.

For the --teacher file: input shape and a guess at its input convention, output
shape, parameters, multiply-accumulates per image (the papers' "FLOPs"; for a
segmentation model, which takes any size, per --image_size image, default
256x341) and the number of BatchNorm layers. Then, for every registered student
of the teacher's kind (classifiers, or DeepLabV3 segmentation models) built for
its input shape and class count: parameters, multiply-accumulates, and
estimated float32 and int8 TFLite sizes (4 and 1 bytes per parameter, before
the file's few KB of fixed overhead). A table, or JSON with --json.

Example:
  dfad-inspect --teacher=runs/digits/teacher.keras
"""

import json
import warnings

from absl import flags

from dfad_tf import models, profile, run as library
from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("teacher", "allow_unsafe_teacher", "image_size"):
    flags.declare_key_flag(name)  # --help lists these shared flags too

PAPER_SEGMENTATION_SIZE = (256, 341)  # CamVid and NYUv2 evaluation images (paper Table 7)

flags.DEFINE_bool("json", False, "Print one JSON object instead of tables.")


def describe(model, image_shape):
    with warnings.catch_warnings():  # the report names the layers not counted itself
        warnings.simplefilter("ignore")
        macs = profile.macs_per_image(model, image_shape)
    return {"name": model.name, "input_shape": list(model.input_shape[1:]),
            "output_shape": list(model.output_shape[1:]),
            "parameters": int(model.count_params()), "macs_per_image": macs,
            "macs_not_counted_in": profile.uncounted_layers(model), "batchnorm_layers": profile.batchnorm_layers(model)}


def main(argv):
    del argv
    if not FLAGS.teacher:
        raise common.FlagError("teacher", "give the model to inspect (a .keras or .h5 file, or a SavedModel directory)")
    with common.flag_errors({"teacher": "teacher.path", "allow_unsafe_teacher": "teacher.allow_unsafe"}):
        teacher = library.load_model(FLAGS.teacher, FLAGS.allow_unsafe_teacher)
    input_shape, classes = tuple(teacher.input_shape[1:]), teacher.output_shape[-1]
    size = common.integers(FLAGS.image_size) if FLAGS.image_size else PAPER_SEGMENTATION_SIZE
    counted_shape = (*size, input_shape[-1])
    report = {"teacher": {**describe(teacher, counted_shape),
                          "input_convention": profile.input_convention_guess(teacher)}, "students": []}
    if None in input_shape:
        report["macs_counted_at"] = list(counted_shape)
    segmenting = models.task_of(teacher) == "segmentation"
    for name in sorted(models.SEGMENTERS if segmenting else models.CLASSIFIERS):
        try:
            student = models.build_model(name, input_shape, classes)
        except ValueError as error:  # e.g. LeNet-5 or a MobileNet on too small an image
            report["students"].append({"name": name, "unavailable": str(error).splitlines()[0]})
            continue
        row = describe(student, counted_shape)
        row.update(float32_bytes_estimate=4 * row["parameters"], int8_bytes_estimate=row["parameters"])
        report["students"].append(row)
    if FLAGS.json:
        print(json.dumps(report))
        return
    t = report["teacher"]
    macs = f"{t['macs_per_image']:,}" if t["macs_per_image"] is not None else "unknown"
    at = f" (at {tuple(report['macs_counted_at'])})" if "macs_counted_at" in report else ""
    print(f"Teacher {FLAGS.teacher} ({t['name']}): input {tuple(t['input_shape'])}, output {tuple(t['output_shape'])}, "
          f"{t['parameters']:,} parameters, {macs} multiply-adds per image{at}, {t['batchnorm_layers']} BatchNorm "
          f"layers\nInput convention: {t['input_convention']}")
    if t["macs_not_counted_in"]:
        print(f"Multiply-adds not counted (a lower bound) in: {', '.join(t['macs_not_counted_in'])}")
    print()
    header = f"{'student':<24}{'parameters':>13}{'multiply-adds':>16}{'float32 bytes':>15}{'int8 bytes':>13}"
    print(header)
    for row in report["students"]:
        if "unavailable" in row:
            print(f"{row['name']:<24}  unavailable for this input: {row['unavailable'][:60]}")
        else:
            print(f"{row['name']:<24}{row['parameters']:>13,}{row['macs_per_image']:>16,}"
                  f"{row['float32_bytes_estimate']:>15,}{row['int8_bytes_estimate']:>13,}")


def run():
    common.run(main, required=["teacher"])


if __name__ == "__main__":
    run()
