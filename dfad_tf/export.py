"""Exporting a trained student for serving and for the edge, and running TFLite."""

import numpy as np

from dfad_tf import fileio


def export_saved_model(model, path):
    """Writes `model` as a SavedModel with a `serve` signature, atomically.

    Example:
    >>> export_saved_model(student, "runs/digits/student_savedmodel")
    """
    with fileio.atomic_directory(path) as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)


def export_tflite(model, path):
    """Writes `model` as a float32 TFLite flatbuffer, atomically.

    Example:
    >>> export_tflite(student, "runs/digits/student.tflite")
    """
    with fileio.atomic_path(path) as tmp:
        model.export(tmp, format="litert", verbose=False)


def tflite_predict(path, images, batch_size=256):
    """Runs a TFLite model over `images` with `ai_edge_litert` and returns its outputs.

    Args:
        path: the `.tflite` file.
        images: float array `(n, height, width, channels)`.
        batch_size: images per interpreter call.

    Returns:
        A numpy array of the model's outputs, one row per image.

    Example:
    >>> logits = tflite_predict("student.tflite", test_images)
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=input_detail["dtype"])
        interpreter.resize_tensor_input(input_detail["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_detail["index"]))
    return np.concatenate(outputs)
