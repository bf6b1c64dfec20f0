"""Unlabelled stand-in data for the KD-REL, KD-UNR and RANDOM baselines, all offline.

The paper distils on a related dataset (KD-REL), an unrelated one (KD-UNR)
and Gaussian noise (RANDOM). For the embedded digits, which ship with nothing
related, two offline stand-ins are built here:

- "printed_digits": the digits 0-9 typeset in the fonts bundled with
  matplotlib, at random sizes, positions and rotations: the same concept in
  another domain (print instead of handwriting), like the paper's related sets.
- "photo_patches": random grey-level crops of the two photographs bundled with
  scikit-learn: natural images with nothing to do with digits.

Any tfds dataset of `data.SOURCES` with the same image shape (e.g. cifar100 for
cifar10) can serve as well; its labels are dropped.

Example:
>>> images = alternative_images("printed_digits", data.spec("digits"), count=256)
"""

import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_sample_images

ALTERNATIVES = ("printed_digits", "photo_patches", "gaussian_noise")


def _printed_digits(count, size, rng):
    fonts = sorted(path for path in font_manager.findSystemFonts(matplotlib.get_data_path() + "/fonts/ttf")
                   if "DejaVu" in path and "Display" not in path)  # the Display fonts lack digits
    images = np.zeros((count, size, size), np.float32)
    for i in range(count):
        font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(size * rng.uniform(0.55, 0.9)))
        canvas = Image.new("L", (2 * size, 2 * size))
        ImageDraw.Draw(canvas).text((size, size), str(rng.integers(10)), fill=255, font=font, anchor="mm")
        canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        offset = rng.integers(-size // 8, size // 8 + 1, size=2)
        left, top = size // 2 + offset[0], size // 2 + offset[1]
        images[i] = np.asarray(canvas.crop((left, top, left + size, top + size)), np.float32) / 255.0
    return images[..., None]


def _photo_patches(count, size, rng):
    photos = [np.asarray(photo, np.float32).mean(-1) / 255.0 for photo in load_sample_images().images]
    images = np.zeros((count, size, size, 1), np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.shape) // 2))
        top, left = rng.integers(photo.shape[0] - side), rng.integers(photo.shape[1] - side)
        images[i] = tf.image.resize(photo[top:top + side, left:left + side, None], (size, size)).numpy()
    return images


def alternative_images(name, spec, count, seed=0):
    """`count` unlabelled images of stand-in data `name`, shaped and normalised like `spec`.

    Args:
        name: one of `ALTERNATIVES`. "gaussian_noise" is standard normal noise
            in the normalised input space (the RANDOM baseline).
        spec: the target dataset's `DatasetSpec` (size, channels, normalisation).
        count: number of images.
        seed: random seed.

    Returns:
        A float32 array `(count, height, width, channels)`.
    """
    rng = np.random.default_rng(seed)
    height, width, channels = spec.image_shape
    if name == "gaussian_noise":
        return rng.standard_normal((count, height, width, channels)).astype(np.float32)
    if name not in ALTERNATIVES:
        raise ValueError(f"unknown stand-in data {name!r}; choose one of: {', '.join(ALTERNATIVES)}")
    if height != width:
        raise ValueError(f"{name} makes square images; the dataset's are {height}x{width}")
    grey = (_printed_digits if name == "printed_digits" else _photo_patches)(count, height, rng)
    images = np.repeat(grey, channels, axis=-1)
    return ((images - np.float32(spec.mean)) / np.float32(spec.std)).astype(np.float32)
