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
--output=probabilities ends the files in a softmax. The normalisation and
--teacher_input are those recorded in the run's student.json unless given.

Then it measures each file, fed the held-out images as it takes them (size,
held-out accuracy or mean IoU with --dataset, top-1
agreement and largest logit difference against the Keras student, median
latency per image on this CPU), prints a table and writes export_report.json,
which also says what the files take and return (input shape, dtype, range,
mean/std, output kind, class count and names).
For comparison the report adds two int8 references that are not shipped: one
calibrated on Gaussian noise (the naive data-free choice) and, with a labelled
--dataset, one calibrated on real training images (the data-driven upper bound).

Example:
  dfad-export --run_dir=runs/digits --qat_iterations=200
  dfad-export --run_dir=runs/digits --input=uint8 --output=probabilities --output_dir=runs/digits/edge
"""

import os
import tempfile

from absl import flags

from dfad_tf import export
from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("dataset", "data_dir", "seed", "teacher", "allow_unsafe_teacher", "teacher_input", "teacher_input_mean",
             "teacher_input_std", "int8_io", "calibration_images"):
    flags.declare_key_flag(name)  # --help lists these shared flags too

flags.DEFINE_string("run_dir", None, "A distill --model_dir: the default place of every input and output.")
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


def _path(flag, filename):
    if FLAGS[flag].value:
        return FLAGS[flag].value
    if FLAGS.run_dir:
        return os.path.join(FLAGS.run_dir, filename)
    raise common.FlagError(flag, f"give --{flag} or --run_dir (a distill --model_dir holding {filename})")


def _load(flag, filename):
    import keras

    from dfad_tf import fileio

    path = _path(flag, filename)
    if not fileio.is_file(path):
        raise common.FlagError(flag, f"{path}: no such file (expected a .keras file from distill)")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for unreadable files
        raise common.FlagError(flag, f"{path}: cannot be read as a Keras model ({type(error).__name__})") from error


def _run_config():
    """The distill configuration recorded beside the student (student.json), if any."""
    from dfad_tf import fileio

    record = fileio.read_json(os.path.splitext(_path("student_path", "student.keras"))[0] + ".json", {})
    return record.get("config", {})


def _adopt_run_config():
    """The run's dataset and --teacher_input* (recorded in student.json) for those flags not given here."""
    config = _run_config()
    for name in ("dataset", "teacher_input", "teacher_input_mean", "teacher_input_std"):
        if name in config and not FLAGS[name].present:
            FLAGS[name].value = config[name]


def _interface(spec, input_map):
    """The --input/--output interface of the files, with the normalisation that --dataset and --teacher_input imply."""
    from dfad_tf import conventions

    mean, std = (spec.mean, spec.std) if spec is not None else (conventions.GENERIC_MEAN, conventions.GENERIC_STD)
    if FLAGS.input != "model" and FLAGS.int8_io:
        raise common.FlagError("int8_io", f"gives the int8 file int8 inputs, but --input={FLAGS.input} files take "
                                          "pixels; drop one of the two")
    if FLAGS.input != "model" and FLAGS.qat_iterations:
        raise common.FlagError("qat_iterations", "the quantization-aware file takes the student's own input; "
                                                 "use --input=model with it")
    return export.ServingInterface(FLAGS.input, FLAGS.output, conventions.from_unit_pixels(input_map, mean, std),
                                   mean, std, spec.class_names if spec is not None else None)


def _references(student, output_dir, input_map, has_data, shape, interface):
    """int8 files calibrated on noise and on real training images, for the report only."""
    import numpy as np

    from dfad_tf import conventions, evaluation

    count = FLAGS.calibration_images
    sources = {"int8_noise_calibrated": np.random.default_rng(FLAGS.seed).standard_normal(
        (count, *shape)).astype("float32")}
    if has_data:
        sources["int8_real_calibrated"] = evaluation.arrays(common.labelled_dataset("train").take(count))[0]
    sources = {name: conventions.adapt_images(images, *input_map) for name, images in sources.items()}
    paths = {}
    for name, calibration in sources.items():
        paths[name] = os.path.join(output_dir, f"{name}.tflite")
        export.export_tflite(interface.wrap(student), paths[name], "int8", interface.file_inputs(calibration),
                             FLAGS.int8_io)
    return paths


def main(argv):
    del argv
    from dfad_tf import conventions, data, edge_report, evaluation, fileio, losses, qat

    if FLAGS.qat_iterations and qat.missing_packages():
        raise common.FlagError("qat_iterations", f"needs {' and '.join(qat.missing_packages())}, installed by "
                                                 "the qat extra: pip install 'dfad_tf[qat]'")
    student = _load("student_path", "student.keras")
    _adopt_run_config()
    if FLAGS.qat_iterations and len(student.output_shape) == 4:
        raise common.FlagError("qat_iterations", "quantization-aware training supports the classifier students "
                                                 "only; export a segmentation student with --qat_iterations=0")
    has_data = FLAGS.dataset != common.NO_DATASET
    needs_generator = "int8" in FLAGS.variants or FLAGS.qat_iterations or FLAGS.references or not has_data
    generator = _load("generator_path", "generator.keras") if needs_generator else None
    teacher = common.load_teacher(_path("teacher", "teacher.keras")) if FLAGS.qat_iterations else None
    output_dir = FLAGS.output_dir or FLAGS.run_dir or os.path.dirname(FLAGS.student_path) or "."
    labels = None
    spec = data.spec(FLAGS.dataset) if has_data else None
    input_map = common.teacher_input_map(spec)
    interface = _interface(spec, input_map)
    if has_data:
        images, labels = evaluation.arrays(common.labelled_dataset("test"))
        images = conventions.adapt_images(images, *input_map)
    else:  # without labelled data, fidelity to the Keras student is measured on generated images
        images = export.generated_images(generator, 512, seed=FLAGS.seed + 1)

    try:
        files = export.export_student(student, output_dir, FLAGS.variants, saved_model=FLAGS.saved_model,
                                      generator=generator, calibration_images=FLAGS.calibration_images,
                                      int8_io=FLAGS.int8_io, seed=FLAGS.seed, interface=interface)
    except ValueError as error:
        raise common.FlagError("student_path", str(error)) from error
    if FLAGS.qat_iterations:
        print(f"Quantization-aware fine-tuning for {FLAGS.qat_iterations} data-free iterations")
        config = _run_config()
        quantized = qat.quantization_aware_finetune(
            teacher, student, generator, iterations=FLAGS.qat_iterations, batch_size=FLAGS.qat_batch_size,
            student_lr=FLAGS.qat_student_lr, seed=FLAGS.seed, width=config.get("student_width", 1.0),
            loss=losses.Discrepancy(config.get("loss", "mae"), standardize=config.get("standardize_logits", False)))
        files["qat_int8"] = os.path.join(output_dir, "student_qat_int8.tflite")
        qat.export_qat_tflite(quantized, files["qat_int8"])

    with tempfile.TemporaryDirectory() as scratch:
        measured = dict(files)
        if FLAGS.references:
            measured.update(_references(student, scratch, input_map, has_data, images.shape[1:], interface))
        rows = edge_report.measure(student, measured, images, labels, spec, interface=interface)
    for row in rows:
        if row["name"].endswith("_calibrated"):
            row["file"] = None  # a reference, not shipped
    report = {"interface": interface.describe(student), "rows": rows,
              "images": "held-out" if labels is not None else "generated",
              "config": {"variants": FLAGS.variants, "input": FLAGS.input, "output": FLAGS.output,
                         "int8_io": FLAGS.int8_io,
                         "calibration_images": FLAGS.calibration_images, "qat_iterations": FLAGS.qat_iterations,
                         "qat_student_lr": FLAGS.qat_student_lr, "seed": FLAGS.seed, "dataset": FLAGS.dataset}}
    fileio.write_json(os.path.join(output_dir, "export_report.json"), report)
    print(edge_report.format_table(rows))
    print(f"Report written to {os.path.join(output_dir, 'export_report.json')}")


def run():
    common.run(main)


if __name__ == "__main__":
    run()
