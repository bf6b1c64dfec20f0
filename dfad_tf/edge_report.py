"""What an exported student costs and how faithful it is: size, accuracy (or mean IoU), agreement, latency."""

import os

import numpy as np
import tensorflow as tf

from dfad_tf import evaluation
from dfad_tf.export import ServingInterface, TFLiteModel


def measure(student, tflite_files, images, labels=None, spec=None, latency_repeats=50, interface=None):
    """Measures TFLite files against their Keras student on the same images.

    Args:
        student: the Keras student the files were exported from.
        tflite_files: `{name: path}`; a "float32" entry is the size reference.
        images: float images `(n, h, w, c)` (held-out images, or generated
            ones when there are no labels).
        labels: integer labels for accuracy, or None.
        spec: the labels' `DatasetSpec`: segmentation labels are scored by
            mean IoU (`miou`) instead of accuracy.
        latency_repeats: single-image runs behind each latency median.
        interface: the files' `export.ServingInterface`: they are fed
            `images` as it takes them (uint8 pixels, say) and compared with
            the Keras student's outputs as it returns them.

    Returns:
        A list of rows (dicts): name, file, size_bytes, size_vs_float32,
        accuracy or miou (if labels), agreement (top-1 with Keras, per pixel
        for segmentation), max_logit_diff (max_probability_diff for files
        returning probabilities), input_dtype (of the file),
        latency_ms (median per image on this CPU).

    Example:
    >>> rows = measure(student, {"float32": "student.tflite", "int8": "student_int8.tflite"}, x, y)
    >>> print(format_table(rows))
    """
    metric = evaluation.metric_name(spec) if spec is not None else "accuracy"

    def score(outputs):
        return {metric: evaluation.score(outputs, labels, spec) if spec else evaluation.accuracy(outputs, labels)}

    interface = interface or ServingInterface()
    difference = "max_probability_diff" if interface.output == "probabilities" else "max_logit_diff"
    reference = interface.file_outputs(evaluation.predict(student, images, batch_size=32))
    file_images = interface.file_inputs(images)
    float_size = _size(tflite_files["float32"]) if "float32" in tflite_files else None
    rows = [{"name": "keras", "file": None, "size_bytes": None, "size_vs_float32": None,
             "agreement": 1.0, difference: 0.0, "input_dtype": None, "latency_ms": None,
             **(score(reference) if labels is not None else {})}]
    for name, path in tflite_files.items():
        model = TFLiteModel(path)
        outputs = model.predict(file_images)
        size = _size(path)
        row = {
            "name": name, "file": os.path.basename(path), "size_bytes": size,
            "size_vs_float32": round(size / float_size, 4) if float_size else None,
            "agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
            difference: float(np.abs(outputs - reference).max()),
            "input_dtype": np.dtype(model.input["dtype"]).name,
            "latency_ms": round(model.latency_ms(file_images[0], latency_repeats), 4),
        }
        if labels is not None:
            row.update(score(outputs))
        rows.append(row)
    return rows


def format_table(rows):
    """The rows of `measure` as a fixed-width text table."""
    columns = [("name", "{}"), ("size_bytes", "{:,}"), ("size_vs_float32", "{:.3f}"), ("accuracy", "{:.4f}"),
               ("miou", "{:.4f}"),
               ("agreement", "{:.4f}"), ("max_logit_diff", "{:.4f}"), ("max_probability_diff", "{:.4f}"),
               ("input_dtype", "{}"), ("latency_ms", "{:.4f}")]
    columns = [(key, fmt) for key, fmt in columns if any(key in row for row in rows)]
    cells = [[key for key, _ in columns]]
    cells += [[fmt.format(row[key]) if row.get(key) is not None else "-" for key, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) if i else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths))) for line in cells)


def _size(path):
    """Bytes of the file at `path`, on any filesystem."""
    return tf.io.gfile.stat(path).length
