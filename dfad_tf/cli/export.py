"""Export a distilled student for the edge, with a report of what each variant costs.

Writes into --output_dir (default: the run directory): student_savedmodel/ and
TFLite variants (student.tflite for float32, student_float16.tflite,
student_dynamic_int8.tflite, student_int8.tflite). The full-integer int8 model
is calibrated on images from the run's trained generator, so no real data is
needed. --qat_iterations=N adds student_qat_int8.tflite: the student fine-tuned
quantization-aware by N more data-free DFAD iterations, then converted.

--input and --output say what the files take and return. By default they are
the student as it is: it takes the run's normalised images and returns logits.
For an edge app, --input=uint8 takes pixels as a camera gives them (0..255) and
--input=unit float pixels in [0, 1], the normalisation baked into the file;
--output=probabilities ends the files in a softmax.

Then it measures each file, fed the held-out images as it takes them (size,
held-out accuracy or mean IoU with --dataset, top-1
agreement and largest logit difference against the Keras student, median
latency per image on this CPU), prints a table and writes export_report.json,
which also says what the files take and return (input shape, dtype, range,
mean/std, output kind, class count and names).
For comparison the report adds two int8 references that are not shipped: one
calibrated on Gaussian noise (the naive data-free choice) and, with a labelled
--dataset, one calibrated on real training images (the data-driven upper bound).

The run's dataset and teacher input convention come from RUN_DIR/run_config.json
(--dataset and --teacher_input are only for a student without one, and must
agree with it); quantization-aware training uses the run's k, discrepancy and
generator objective.

Example:
  dfad-export --run_dir=runs/digits --qat_iterations=200
  dfad-export --run_dir=runs/digits --input=uint8 --output=probabilities --output_dir=runs/digits/edge
"""

import os

from absl import flags

from dfad_tf import edge_report, export, run as library
from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("run_dir", "dataset", "data_dir", "seed", "teacher", "allow_unsafe_teacher", "teacher_input",
             "teacher_input_mean", "teacher_input_std", "int8_io", "calibration_images"):
    flags.declare_key_flag(name)  # --help lists these shared flags too

flags.DEFINE_string("student_path", None, "Student .keras file (default: RUN_DIR/student.keras).")
flags.DEFINE_string("generator_path", None, "The run's generator, for int8 calibration and QAT "
                                            "(default: RUN_DIR/generator.keras).")
flags.DEFINE_string("output_dir", None, "Where to write (default: RUN_DIR, else the student's directory).")
flags.DEFINE_list("variants", list(export.VARIANTS), f"TFLite variants to write: any of {', '.join(export.VARIANTS)}.")
flags.DEFINE_enum("input", "model", list(export.INPUTS),
                  "What the exported files take: model (the student's own input: the run's normalised images), "
                  "unit (float32 pixels in [0, 1]) or uint8 (pixels in 0..255, as a camera gives them); unit and "
                  "uint8 files normalise their input themselves.")
flags.DEFINE_enum("output", "logits", list(export.OUTPUTS),
                  "What the exported files return: logits, or probabilities (a softmax over the classes).")
flags.DEFINE_bool("saved_model", True, "Also write student_savedmodel/.")
flags.DEFINE_integer("qat_iterations", 0, "Data-free quantization-aware fine-tuning iterations (0: none).",
                     lower_bound=0)
flags.DEFINE_float("qat_student_lr", 1e-4, "SGD learning rate of quantization-aware fine-tuning.")
flags.DEFINE_integer("qat_batch_size", 128, "Generated images per quantization-aware step.", lower_bound=1)
flags.DEFINE_bool("references", True, "Add the noise- and real-data-calibrated int8 references to the report.")

common.require_positive("qat_student_lr")
flags.register_validator("variants", lambda values: set(values) <= set(export.VARIANTS),
                         message=f"--variants takes a comma-separated subset of {', '.join(export.VARIANTS)}")

# flag: the argument or field of `run.export` it sets
FIELDS = {**common.RUN_SETTING_FIELDS, "student_path": "student_path", "generator_path": "generator_path",
          "qat_iterations": "qat_iterations"}


def main(argv):
    del argv
    data_config, teacher = common.run_setting()
    with common.flag_errors(FIELDS):
        report = library.export(
            FLAGS.run_dir, variants=FLAGS.variants, saved_model=FLAGS.saved_model, references=FLAGS.references,
            qat_iterations=FLAGS.qat_iterations, qat_student_lr=FLAGS.qat_student_lr,
            qat_batch_size=FLAGS.qat_batch_size, calibration_images=FLAGS.calibration_images,
            int8_io=FLAGS.int8_io, seed=FLAGS.seed, output_dir=FLAGS.output_dir, student_path=FLAGS.student_path,
            generator_path=FLAGS.generator_path, data_config=data_config, teacher=teacher, input=FLAGS.input,
            output=FLAGS.output)
    output_dir = FLAGS.output_dir or FLAGS.run_dir or os.path.dirname(FLAGS.student_path) or "."
    print(edge_report.format_table(report["rows"]))
    print(f"Report written to {os.path.join(output_dir, 'export_report.json')}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
