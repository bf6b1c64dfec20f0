"""Exporting a trained student for serving and for the edge, and running TFLite files.

TFLite variants:

- `float32`: the model as it is.
- `float16`: weights stored as float16 (half the size, float computation).
- `dynamic_int8`: weights stored as int8, activations quantized on the fly.
- `int8`: full-integer model; activation ranges are calibrated on representative
  images. A data-free user has none, so dfad_tf calibrates on images drawn from
  the trained generator (`generated_images`).
"""

import os
import time

import numpy as np
import tensorflow as tf

from dfad_tf import fileio

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


def export_saved_model(model, path):
    """Writes `model` as a SavedModel with a `serve` signature, atomically.

    Example:
    >>> export_saved_model(student, "runs/digits/student_savedmodel")
    """
    with fileio.atomic_directory(path) as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)


def converter_options(variant, calibration_images=None, int8_io=False):
    """Keyword arguments of the TFLite converter for a variant.

    Args:
        variant: one of `VARIANTS`.
        calibration_images: float array `(n, h, w, c)`; required for "int8".
        int8_io: for "int8", also make the model's input and output int8.

    Returns:
        A dict for `model.export(..., format="litert", **options)`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from: {', '.join(VARIANTS)}")
    if variant == "float32":
        return {}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if variant == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif variant == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("the int8 variant needs calibration images (e.g. from the trained generator)")
        images = np.asarray(calibration_images, dtype="float32")
        options["representative_dataset"] = lambda: ([image[None]] for image in images)
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
        if int8_io:
            options.update(inference_input_type=tf.int8, inference_output_type=tf.int8)
    return options


def export_tflite(model, path, variant="float32", calibration_images=None, int8_io=False):
    """Writes `model` as a TFLite flatbuffer of the given variant, atomically.

    Args:
        model: a Keras model.
        path: the `.tflite` file to write.
        variant: one of `VARIANTS`.
        calibration_images: representative images for "int8".
        int8_io: for "int8", int8 input and output tensors.

    Raises:
        ValueError: unknown variant, missing calibration images, or a model the
            converter cannot convert (the message says which).

    Example:
    >>> export_tflite(student, "student_int8.tflite", "int8", generated_images(generator))
    """
    options = converter_options(variant, calibration_images, int8_io)
    with fileio.atomic_path(path) as tmp:
        try:
            model.export(tmp, format="litert", verbose=False, **options)
        except Exception as error:  # the converter raises many types; all mean "cannot convert"
            reason = next((line for line in str(error).splitlines() if "error" in line.lower()),
                          str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
            raise ValueError(f"TFLite cannot convert {model.name!r} to {variant}: {reason.strip()}") from error


def tflite_filename(variant):
    """File name of a variant in an output directory: student.tflite, student_int8.tflite, ..."""
    return "student.tflite" if variant == "float32" else f"student_{variant}.tflite"


def export_student(student, output_dir, variants, saved_model=True, generator=None, calibration_images=512,
                   int8_io=False, seed=0):
    """Writes a student's SavedModel and TFLite variants into `output_dir`.

    Args:
        student: the Keras student.
        output_dir: destination directory.
        variants: names from `VARIANTS`.
        saved_model: also write `student_savedmodel/`.
        generator: the run's generator; required for "int8", whose activation
            ranges are calibrated on its images.
        calibration_images: how many generated images calibrate "int8".
        int8_io: int8 input and output tensors for "int8".
        seed: seed of the calibration noise.

    Returns:
        `{variant: path}` of the TFLite files written.

    Example:
    >>> export_student(student, "runs/digits", ["float32", "int8"], generator=generator)
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown TFLite variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    if "int8" in variants and generator is None:
        raise ValueError("the int8 variant is calibrated on generated images and needs the run's generator")
    if saved_model:
        export_saved_model(student, os.path.join(output_dir, "student_savedmodel"))
    calibration = generated_images(generator, calibration_images, seed) if "int8" in variants else None
    paths = {}
    for variant in variants:
        paths[variant] = os.path.join(output_dir, tflite_filename(variant))
        export_tflite(student, paths[variant], variant, calibration, int8_io)
    return paths


def generated_images(generator, num_images=512, seed=0, batch_size=256):
    """Images from a trained generator, in inference mode: calibration data without data.

    Args:
        generator: the generator of a DFAD run.
        num_images: how many images.
        seed: seed of the latent noise.
        batch_size: images per forward pass.

    Returns:
        A float32 array `(num_images, h, w, c)`.
    """
    latents = np.random.default_rng(seed).standard_normal(
        (num_images, generator.input_shape[-1])).astype("float32")
    return np.concatenate([np.asarray(generator(latents[start:start + batch_size], training=False))
                           for start in range(0, num_images, batch_size)])


class TFLiteModel:
    """A TFLite file run with `ai_edge_litert`, taking and returning float arrays.

    Quantized int8 inputs and outputs are converted with the file's own scale
    and zero point, so every variant is called the same way.

    Args:
        path: the `.tflite` file.

    Example:
    >>> logits = TFLiteModel("student_int8.tflite").predict(test_images)
    """

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        with tf.io.gfile.GFile(self.path, "rb") as file:  # any filesystem, gs:// too
            self.interpreter = Interpreter(model_content=file.read())
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()
        self._batch = None

    def _run(self, batch):
        if batch.shape != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], batch.shape)
            self.interpreter.allocate_tensors()
            self._batch = batch.shape
        if self.input["dtype"] != np.float32:
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], batch.astype(self.input["dtype"]))
        self.interpreter.invoke()
        outputs = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            outputs = (outputs.astype("float32") - zero_point) * scale
        return outputs

    def predict(self, images, batch_size=256):
        """Outputs for float `images`, one row per image."""
        images = np.asarray(images, dtype="float32")
        return np.concatenate([self._run(images[start:start + batch_size])
                               for start in range(0, len(images), batch_size)])

    def latency_ms(self, image, repeats=50):
        """Median milliseconds to run one image (after one warm-up run)."""
        batch = np.asarray(image, dtype="float32")[None]
        self._run(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self._run(batch)
            times.append(time.perf_counter() - start)
        return 1000 * float(np.median(times))


def tflite_predict(path, images, batch_size=256):
    """Outputs of the TFLite file at `path` for float `images`."""
    return TFLiteModel(path).predict(images, batch_size)
