"""What a dataset looks like, known without loading it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Shape and normalisation of a labelled image dataset.

    Args:
        image_shape: `(height, width, channels)` after preprocessing.
        num_classes: number of labels.
        mean: per-channel mean subtracted from pixels scaled to [0, 1].
        std: per-channel standard deviation pixels are divided by.
        splits: names of the available splits.
        augmentation: teacher-training augmentation: "shift_rotate" (small
            shifts and rotations, for digits) or "crop_flip" (random crops
            with padding and horizontal flips, for photos).

    Example:
    >>> DatasetSpec((32, 32, 1), 10, (0.1307,), (0.3081,)).num_classes
    10
    """

    image_shape: tuple
    num_classes: int
    mean: tuple
    std: tuple
    splits: tuple = ("train", "test")
    augmentation: str = "shift_rotate"
