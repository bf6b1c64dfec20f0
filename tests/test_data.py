import numpy as np
import pytest
import tensorflow_datasets as tfds

from dfad_tf import data
from dfad_tf.data import digits


def test_digits_split_is_fixed_stratified_70_30_and_normalised_like_mnist():
    train_images, train_labels = digits.arrays("train")
    test_images, test_labels = digits.arrays("test")
    assert train_images.shape == (1257, 32, 32, 1) and test_images.shape == (540, 32, 32, 1)
    assert train_images.dtype == np.float32
    # Stratified: every class is 30 % +- one image in the test split.
    counts = np.bincount(test_labels, minlength=10)
    totals = counts + np.bincount(train_labels, minlength=10)
    assert np.all(np.abs(counts - 0.3 * totals) <= 1)
    # MNIST normalisation: black is (0 - 0.1307) / 0.3081, white (1 - 0.1307) / 0.3081.
    assert train_images.min() == pytest.approx(-0.1307 / 0.3081, abs=1e-4)
    assert train_images.max() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-3)
    # The split is the same every time.
    np.testing.assert_array_equal(digits.arrays("test")[1], test_labels)


def test_load_returns_unbatched_image_label_pairs():
    image, label = next(iter(data.load("digits", "test")))
    assert image.shape == (32, 32, 1) and label.shape == ()
    assert data.spec("digits").image_shape == (32, 32, 1) and data.spec("digits").num_classes == 10


def test_mnist_through_tfds_is_resized_to_32_and_normalised():
    with tfds.testing.mock_data(num_examples=6):
        dataset = data.load("mnist", "train")
        images, labels = zip(*dataset.as_numpy_iterator())
    images = np.stack(images)
    assert images.shape == (6, 32, 32, 1) and images.dtype == np.float32
    assert images.min() >= -0.1307 / 0.3081 - 1e-4 and images.max() <= (1 - 0.1307) / 0.3081 + 1e-4
    assert all(0 <= label < 10 for label in labels)


def test_unknown_dataset_or_split_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; choose one of: digits, mnist"):
        data.load("cifar11", "train")
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load("digits", "validation")


def test_missing_tfds_data_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.tfds_sources.DatasetUnavailableError, match=r"--dataset=mnist: .*no network$"):
        data.load("mnist", "test", data_dir=str(tmp_path))
