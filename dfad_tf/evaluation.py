"""Held-out evaluation of Keras and TFLite models: top-1 accuracy, or mean IoU for segmentation."""

import keras
import numpy as np


def arrays(dataset):
    """Materialises an unbatched `(image, label)` dataset as two numpy arrays."""
    images, labels = zip(*dataset.batch(1024).as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels)


def accuracy(logits, labels):
    """Top-1 accuracy of `logits` (`(n, ..., classes)`) against integer `labels`."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def mean_iou(logits, labels, num_classes, ignore_label=None):
    """Mean intersection over union of per-pixel predictions, over the whole set.

    Intersections and unions are summed over all images before dividing (the
    paper's "mIoU on the whole test set"); classes absent from both the labels
    and the predictions are left out of the mean, and pixels labelled
    `ignore_label` count nowhere.

    Args:
        logits: `(n, h, w, num_classes)` scores.
        labels: `(n, h, w)` integer labels.
        num_classes: number of classes.
        ignore_label: label of pixels to skip (e.g. 255), or None.

    Example:
    >>> mean_iou(np.eye(2)[[[0, 1]]], np.array([[0, 0]]), 2)
    0.25
    """
    predictions = np.argmax(logits, axis=-1).ravel()
    labels = np.asarray(labels).ravel()
    if ignore_label is not None:
        keep = labels != ignore_label
        predictions, labels = predictions[keep], labels[keep]
    confusion = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else 0.0


def metric_name(spec):
    """What a dataset's models are measured by: "accuracy", or "miou" for segmentation."""
    return "miou" if spec.task == "segmentation" else "accuracy"


def keras_metric(spec):
    """The Keras metric measuring `spec`'s students in `fit`: "accuracy", or mean IoU (`miou`) skipping ignored pixels.

    Example:
    >>> distiller.compile(..., metrics=[keras_metric(data.spec("camvid"))])  # logs val_miou
    """
    if spec.task != "segmentation":
        return "accuracy"
    return keras.metrics.MeanIoU(spec.num_classes, name="miou", ignore_class=spec.ignore_label, sparse_y_pred=False)


def score(logits, labels, spec):
    """`metric_name(spec)` of `logits` against `labels`, for the dataset of `spec`.

    Example:
    >>> score(student_logits, labels, data.spec("camvid"))  # mean IoU, void pixels ignored
    """
    if spec.task == "segmentation":
        return mean_iou(logits, labels, spec.num_classes, spec.ignore_label)
    return accuracy(logits, labels)


# A teacher whose held-out score is within this of a constant prediction's has learnt nothing usable.
CHANCE_MARGIN = 0.05


def constant_score(labels, spec):
    """`score` of always predicting the most frequent label: what a model that learnt nothing reaches.

    Example:
    >>> constant_score(np.array([0, 1, 1, 2]), data.spec("digits"))
    0.5
    """
    labels = np.asarray(labels)
    counted = labels[labels != spec.ignore_label] if spec.ignore_label is not None else labels
    majority = np.bincount(counted.ravel(), minlength=spec.num_classes).argmax()
    return score(np.broadcast_to(np.eye(spec.num_classes)[majority], (*labels.shape, spec.num_classes)), labels, spec)


def at_chance(value, labels, spec):
    """Whether a held-out score is no better than a constant prediction (within `CHANCE_MARGIN`).

    Returns:
        `(at_chance, constant)`: the verdict and the constant prediction's score.

    Example:
    >>> at_chance(0.10, test_labels, data.spec("digits"))  # a teacher fed the wrong input convention
    (True, 0.1)
    """
    constant = constant_score(labels, spec)
    return value <= constant + CHANCE_MARGIN, constant


def predict(model, images, batch_size=512):
    """Outputs of a Keras model in inference mode, computed batch by batch.

    Calls the model directly rather than through `model.predict`, which would
    trace a new graph for every model and every odd-sized last batch.
    """
    return np.concatenate([np.asarray(model(images[start:start + batch_size], training=False))
                           for start in range(0, len(images), batch_size)])


def model_accuracy(model, images, labels, batch_size=512):
    """Top-1 accuracy of a Keras model in inference mode.

    Example:
    >>> images, labels = arrays(data.load("digits", "test"))
    >>> model_accuracy(teacher, images, labels)
    0.99
    """
    return accuracy(predict(model, images, batch_size), labels)


def model_score(model, images, labels, spec, batch_size=32):
    """`score` of a Keras model in inference mode (accuracy, or mean IoU)."""
    return score(predict(model, images, batch_size), labels, spec)


def selections(history, metric="accuracy"):
    """What each way of choosing the final student would have given, from a run's per-epoch history.

    The paper picks the epoch with the best held-out score, which needs labels a
    data-free user does not have. The label-free choices are the last epoch,
    the epoch whose student agreed most with the teacher on the fixed bank of
    generated images (`gen_agreement`), and the student that agreed most on
    the images generated over the whole run (`run_choice` of the last epoch,
    what a run without labels keeps).

    Args:
        history: rows of `history.csv` (dicts with "epoch", `val_<metric>`,
            "gen_agreement" and "run_choice"), in epoch order.
        metric: "accuracy" or "miou".

    Returns:
        `{"best_epoch_with_labels", "last_epoch", "best_gen_agreement",
        "run_choice"}`, each `{"epoch": 1-based epoch, metric: held-out score
        of that epoch's student}`.

    Example:
    >>> selections([{"epoch": "0", "val_accuracy": "0.5", "gen_agreement": "0.9", "run_choice": "1"},
    ...             {"epoch": "1", "val_accuracy": "0.7", "gen_agreement": "0.8", "run_choice": "2"}])["run_choice"]
    {'epoch': 2, 'accuracy': 0.7}
    """
    scores = [float(row[f"val_{metric}"]) for row in history]
    agreement = [float(row["gen_agreement"]) for row in history]
    chosen = {"best_epoch_with_labels": int(np.argmax(scores)), "last_epoch": len(scores) - 1,
              "best_gen_agreement": int(np.argmax(agreement)), "run_choice": int(float(history[-1]["run_choice"])) - 1}
    return {name: {"epoch": index + 1, metric: scores[index]} for name, index in chosen.items()}


def first_within(history, target, metric="accuracy"):
    """The first epoch whose student scored at least `target`, and when it ended; None if none did.

    Args:
        history: rows of `history.csv` (dicts with "epoch", `val_<metric>` and
            "seconds"), in epoch order.
        target: the held-out score to reach, e.g. the teacher's minus 0.02.
        metric: "accuracy" or "miou".

    Returns:
        `{"epoch": 1-based epoch, "seconds": wall seconds of distillation to its end}`
        (seconds None for a history written without them), or None.

    Example:
    >>> first_within([{"epoch": "0", "val_accuracy": "0.5", "seconds": "20.0"},
    ...               {"epoch": "1", "val_accuracy": "0.9", "seconds": "41.5"}], 0.8)
    {'epoch': 2, 'seconds': 41.5}
    """
    for index, row in enumerate(history):
        if float(row[f"val_{metric}"]) >= target:
            seconds = row.get("seconds")
            return {"epoch": index + 1, "seconds": float(seconds) if seconds not in (None, "", "NA") else None}
    return None
