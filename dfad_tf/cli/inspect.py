"""Describe a teacher, and what each registered student would cost for it.

For the --teacher file: input shape and a guess at its input convention, output
shape, parameters, multiply-accumulates per image (the papers' "FLOPs") and the
number of BatchNorm layers. Then, for every registered student built for the
teacher's input shape and class count: parameters, multiply-accumulates, and
estimated float32 and int8 TFLite sizes (4 and 1 bytes per parameter, before
the file's few KB of fixed overhead). A table, or JSON with --json.

Example:
  dfad-inspect --teacher=runs/digits/teacher.keras
"""

import json

from absl import flags

from dfad_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_bool("json", False, "Print one JSON object instead of tables.")


def describe(model):
    from dfad_tf import profile

    return {"name": model.name, "input_shape": list(model.input_shape[1:]), "output_shape": list(model.output_shape[1:]),
            "parameters": int(model.count_params()), "macs_per_image": profile.macs_per_image(model),
            "batchnorm_layers": profile.batchnorm_layers(model)}


def main(argv):
    del argv
    from dfad_tf import models, profile

    if not FLAGS.teacher:
        raise common.FlagError("teacher", "give the model to inspect (a .keras or .h5 file, or a SavedModel directory)")
    teacher = common.load_teacher(FLAGS.teacher)
    report = {"teacher": {**describe(teacher), "input_convention": profile.input_convention_guess(teacher)},
              "students": []}
    input_shape, classes = tuple(teacher.input_shape[1:]), teacher.output_shape[-1]
    for name in sorted(models.CLASSIFIERS):
        try:
            student = models.build_classifier(name, input_shape, classes)
        except ValueError as error:  # e.g. LeNet-5 or a MobileNet on too small an image
            report["students"].append({"name": name, "unavailable": str(error).splitlines()[0]})
            continue
        row = describe(student)
        row.update(float32_bytes_estimate=4 * row["parameters"], int8_bytes_estimate=row["parameters"])
        report["students"].append(row)
    if FLAGS.json:
        print(json.dumps(report))
        return
    t = report["teacher"]
    macs = f"{t['macs_per_image']:,}" if t["macs_per_image"] is not None else "unknown"
    print(f"Teacher {FLAGS.teacher} ({t['name']}): input {tuple(t['input_shape'])}, output {tuple(t['output_shape'])}, "
          f"{t['parameters']:,} parameters, {macs} multiply-adds per image, {t['batchnorm_layers']} BatchNorm layers\n"
          f"Input convention: {t['input_convention']}\n")
    header = f"{'student':<20}{'parameters':>13}{'multiply-adds':>16}{'float32 bytes':>15}{'int8 bytes':>13}"
    print(header)
    for row in report["students"]:
        if "unavailable" in row:
            print(f"{row['name']:<20}  unavailable for this input: {row['unavailable'][:60]}")
        else:
            print(f"{row['name']:<20}{row['parameters']:>13,}{row['macs_per_image']:>16,}"
                  f"{row['float32_bytes_estimate']:>15,}{row['int8_bytes_estimate']:>13,}")


def run():
    common.run(main, required=["teacher"])


if __name__ == "__main__":
    run()
