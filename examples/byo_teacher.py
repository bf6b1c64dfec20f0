"""Make a "downloaded" teacher: an architecture dfad_tf has never seen, with its own input convention.

A small Conv-BN-ReLU network trained on digits with pixels in [0, 1] and no normalisation,
saved as a Keras 3 file and as a TensorFlow SavedModel, to be distilled by path:

    python examples/byo_teacher.py --out=runs/byo
    dfad-distill --flagfile=flags/digits.cfg --teacher=runs/byo/teacher.keras --teacher_input=unit \\
        --model_dir=runs/byo_lenet
"""

import argparse
import os

import keras
import numpy as np

from dfad_tf import evaluation, export
from dfad_tf.data import digits


def build(input_shape=(32, 32, 1), num_classes=10):
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="digits_convnet")


def to_unit(images):
    """Digits as this teacher's users feed it: pixels in [0, 1], no normalisation."""
    mean, std = digits.SPEC.mean[0], digits.SPEC.std[0]
    return images * std + mean


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/byo")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    train_images, train_labels = digits.arrays("train")
    test_images, test_labels = digits.arrays("test")
    model = build()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    augment = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=0.0)
    train = to_unit(train_images)
    for _ in range(args.epochs):
        model.fit(np.asarray(augment(train, training=True)), train_labels, batch_size=64, epochs=1, verbose=0)
    accuracy = evaluation.model_accuracy(model, to_unit(test_images), test_labels)
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "teacher.keras"))
    export.export_saved_model(model, os.path.join(args.out, "teacher_savedmodel"))
    print(f"digits_convnet teacher, inputs in [0, 1]: held-out accuracy {accuracy:.4f}; saved in {args.out}")


if __name__ == "__main__":
    main()
