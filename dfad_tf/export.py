"""Exporting a trained student for serving and for the edge, and running TFLite files.

TFLite variants:

- `float32`: the model as it is.
- `float16`: weights stored as float16 (half the size, float computation).
- `dynamic_int8`: weights stored as int8, activations quantized on the fly.
- `int8`: full-integer model; activation ranges are calibrated on representative
  images. A data-free user has none, so dfad_tf calibrates on images drawn from
  the trained generator (`generated_images`).

What every file takes and returns is a `ServingInterface`: by default the
student's own input (normalised images) and logits; for an edge app, uint8
pixels (0..255, what a camera gives) or float pixels in [0, 1], and class
probabilities, with the normalisation baked into the file.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from dfad_tf import fileio

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
INPUTS = ("model", "unit", "uint8")
OUTPUTS = ("logits", "probabilities")


class ServingInterface:
    """What an exported student takes and returns, baked into the exported files.

    The student takes its run's images: pixels in [0, 1], normalised with the
    dataset's mean and std and mapped into the teacher's input convention. An
    edge app has pixels. An interface puts that map in front of the student,
    and a softmax behind it if asked, so that the file takes:

    - "model": what the student takes (nothing added);
    - "unit": float32 pixels in [0, 1];
    - "uint8": uint8 pixels in 0..255.

    and returns "logits" or "probabilities". The files' signature is named:
    `serving_default(images) -> {logits or probabilities}` (the "model"/"logits"
    interface keeps the student's own signature).

    Args:
        input: one of `INPUTS`.
        output: one of `OUTPUTS`.
        from_unit: `(scale, offset)` from [0, 1] pixels to the student's input,
            per channel (`conventions.from_unit_pixels`).
        mean, std: the per-channel normalisation behind `from_unit`, recorded
            by `describe`.
        class_names: the name of each class, if known.

    Example:
    >>> interface = ServingInterface("uint8", "probabilities", conventions.from_unit_pixels((1.0, 0.0), mean, std))
    >>> export_student(student, "runs/digits/edge", ["float32", "int8"], generator=generator, interface=interface)
    """

    def __init__(self, input="model", output="logits", from_unit=(1.0, 0.0), mean=None, std=None, class_names=None):
        if input not in INPUTS:
            raise ValueError(f"unknown input {input!r}; choose one of: {', '.join(INPUTS)}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of: {', '.join(OUTPUTS)}")
        self.input, self.output = input, output
        self.from_unit = tuple(np.asarray(value, "float32") for value in from_unit)
        self.mean, self.std, self.class_names = mean, std, class_names

    @property
    def is_model(self):
        """Whether the files are the student as it is."""
        return self.input == "model" and self.output == "logits"

    def _to_student(self):
        """(scale, offset) from the file's input to the student's."""
        scale, offset = self.from_unit
        return (scale / 255, offset) if self.input == "uint8" else (scale, offset)

    def wrap(self, student):
        """The student behind this interface, as a Keras model (the student itself for "model"/"logits")."""
        if self.is_model:
            return student
        images = keras.Input(student.input_shape[1:], dtype="uint8" if self.input == "uint8" else "float32",
                             name="images")
        x = images
        if self.input != "model":  # Rescaling also casts uint8 to float
            scale, offset = self._to_student()
            x = keras.layers.Rescaling(scale.tolist(), offset.tolist(), name="to_student_input")(x)
        outputs = student(x)
        if self.output == "probabilities":
            outputs = keras.layers.Softmax(name="softmax")(outputs)
        return keras.Model(images, {self.output: outputs}, name=f"{student.name}_{self.input}_{self.output}")

    def file_inputs(self, images):
        """Images the student takes (e.g. held-out or generated ones), as the files take them."""
        images = np.asarray(images, "float32")
        if self.input == "model":
            return images
        scale, offset = self.from_unit
        unit = (images - offset) / scale
        return np.clip(np.round(unit * 255), 0, 255).astype("uint8") if self.input == "uint8" else unit

    def file_outputs(self, logits):
        """The student's logits as the files return them."""
        logits = np.asarray(logits, "float32")
        if self.output == "logits":
            return logits
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    def describe(self, student):
        """What the files take and return, as a JSON-ready dict for export_report.json."""
        scale, offset = self.from_unit
        if self.input == "uint8":
            dtype, value_range, meaning = "uint8", [0, 255], "pixels as a camera gives them; the file normalises them"
        elif self.input == "unit":
            dtype, value_range, meaning = "float32", [0.0, 1.0], "pixels scaled to [0, 1]; the file normalises them"
        else:
            dtype, value_range = "float32", [float(v) for v in (offset.min(), (scale + offset).max())]
            meaning = "the student's own input: scale * pixel + offset for pixels in [0, 1]"
        num_classes = student.output_shape[-1]
        return {
            "signature": "serving_default",
            "input": {"name": "images" if not self.is_model else None, "shape": list(student.input_shape),
                      "dtype": dtype, "range": value_range, "meaning": meaning,
                      "mean": _floats(self.mean), "std": _floats(self.std),
                      "unit_pixel_to_student_input": {"scale": _floats(scale), "offset": _floats(offset)}},
            "output": {"name": self.output if not self.is_model else None, "shape": list(student.output_shape),
                       "dtype": "float32", "kind": self.output,
                       "range": [0.0, 1.0] if self.output == "probabilities" else None,
                       "classes": int(num_classes),
                       "class_names": list(self.class_names) if self.class_names else None},
        }


def _floats(values):
    return None if values is None else [round(float(v), 6) for v in np.ravel(values)]


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
        images = np.asarray(calibration_images)  # float, or uint8 for a uint8-input model
        images = images if images.dtype == np.uint8 else images.astype("float32")
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
                   int8_io=False, seed=0, interface=None):
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
        interface: a `ServingInterface`: what the files take and return
            (default: the student's own input, logits).

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
    interface = interface or ServingInterface()
    if int8_io and interface.input != "model":
        raise ValueError(f"int8_io gives the int8 file int8 inputs, but the interface takes {interface.input} pixels")
    model = interface.wrap(student)
    if saved_model:
        export_saved_model(model, os.path.join(output_dir, "student_savedmodel"))
    calibration = None
    if "int8" in variants:
        calibration = interface.file_inputs(generated_images(generator, calibration_images, seed))
    paths = {}
    for variant in variants:
        paths[variant] = os.path.join(output_dir, tflite_filename(variant))
        export_tflite(model, paths[variant], variant, calibration, int8_io)
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
    and zero point, so every variant is called the same way; a uint8-input
    file (`ServingInterface("uint8")`) takes pixels in 0..255.

    Args:
        path: the `.tflite` file.

    Example:
    >>> logits = TFLiteModel("student_int8.tflite").predict(test_images)
    """

    def __init__(self, path):
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
        dtype = self.input["dtype"]
        if dtype != np.float32:
            scale, zero_point = self.input["quantization"]
            if scale:  # a quantized input; unquantized integer inputs (uint8 pixels) are taken as they are
                batch = np.round(batch / scale + zero_point)
            batch = np.clip(batch, np.iinfo(dtype).min, np.iinfo(dtype).max)
        self.interpreter.set_tensor(self.input["index"], batch.astype(dtype))
        self.interpreter.invoke()
        outputs = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            outputs = (outputs.astype("float32") - zero_point) * scale
        return outputs

    def predict(self, images, batch_size=256):
        """Outputs for `images` (float, or uint8 pixels for a uint8-input file), one row per image."""
        images = np.asarray(images)
        images = images if images.dtype == np.uint8 else images.astype("float32")
        return np.concatenate([self._run(images[start:start + batch_size])
                               for start in range(0, len(images), batch_size)])

    def latency_ms(self, image, repeats=50):
        """Median milliseconds to run one image (after one warm-up run)."""
        batch = np.asarray(image)[None]
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
