"""Classifies raw digit pixels with a student exported by `dfad-export --input=uint8 [--output=probabilities]`.

Needs only ai_edge_litert and numpy. IMAGES.npy: uint8 pixels 0..255, shape (n, 32, 32, 1), dark background.
Usage: python examples/classify_raw_digits.py runs/digits/edge/student.tflite IMAGES.npy
Prints the class of each image, one line each.
"""
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter

model_path, images_path = sys.argv[1:3]
classify = Interpreter(model_path=model_path).get_signature_runner("serving_default")
images = np.load(images_path).astype(np.uint8)
(scores,) = classify(images=images).values()  # "probabilities" or "logits", one row per image
for label in scores.argmax(axis=-1):
    print(label)
