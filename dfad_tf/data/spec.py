"""What a dataset looks like, known without loading it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Shape, task and normalisation of a labelled image dataset.

    Args:
        image_shape: `(height, width, channels)` after preprocessing. For
            segmentation, the size of the random training crops, which is also
            the size of the generated images.
        num_classes: number of labels (per image, or per pixel).
        mean: per-channel mean subtracted from pixels scaled to [0, 1].
        std: per-channel standard deviation pixels are divided by.
        splits: names of the available splits.
        augmentation: teacher-training augmentation: "shift_rotate" (small
            shifts and rotations, for digits) or "crop_flip" (random crops
            with padding and horizontal flips, for photos); for segmentation,
            "crop_flip" takes random `image_shape` crops of image and mask
            together and flips both.
        task: "classification" (one label per image) or "segmentation" (one
            label per pixel).
        ignore_label: segmentation label of pixels that count in neither
            training nor evaluation (255 for CamVid and NYUv2), or None.
        eval_shape: segmentation: `(height, width, channels)` of the whole
            images of every split (the models are fully convolutional and
            evaluated on them); None for classification.
        class_names: the name of each label, or None when unknown.

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
    task: str = "classification"
    ignore_label: int = None
    eval_shape: tuple = None
    class_names: tuple = None
