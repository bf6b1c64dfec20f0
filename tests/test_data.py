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


@pytest.mark.parametrize("name, shape, classes", [("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100)])
def test_cifar_through_tfds_is_normalised_with_the_reference_statistics(name, shape, classes):
    spec = data.spec(name)
    with tfds.testing.mock_data(num_examples=8):
        images, labels = map(np.stack, zip(*data.load(name, "test").as_numpy_iterator()))
    assert images.shape == (8, *shape) and spec.num_classes == classes and spec.augmentation == "crop_flip"
    low, high = (0 - np.array(spec.mean)) / spec.std, (1 - np.array(spec.mean)) / spec.std
    assert np.all(images.min((0, 1, 2)) >= low - 1e-4) and np.all(images.max((0, 1, 2)) <= high + 1e-4)
    assert labels.min() >= 0 and labels.max() < classes


def test_caltech101_is_resplit_like_the_paper_without_the_background_class():
    """Pooled tfds splits, background class 4 dropped, a fixed 1695/8677 test share, 128x128 crops."""
    def raw(split):
        return tfds.load("caltech101", split=split, as_supervised=True)

    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        pooled = [int(label) for _, label in raw("train+test").as_numpy_iterator()]
        train = list(data.load("caltech101", "train").as_numpy_iterator())
        test = list(data.load("caltech101", "test").as_numpy_iterator())
        again = [int(label) for _, label in data.load("caltech101", "test").as_numpy_iterator()]
    kept = [label for label in pooled if label != 4]
    assert 4 in pooled and len(kept) < len(pooled)  # the mock data has background images to drop
    assert len(train) + len(test) == len(kept)
    assert len(test) == round(len(kept) * 1695 / 8677)
    assert again == [int(label) for _, label in test]  # the split is fixed
    labels = np.array([label for _, label in train + test])
    expected = np.array([label - (label > 4) for label in kept])
    assert sorted(labels) == sorted(expected) and labels.max() < 101
    assert {image.shape for image, _ in train + test} == {(128, 128, 3)}
    assert data.spec("caltech101").num_classes == 101


def test_unknown_dataset_or_split_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; choose one of: caltech101, camvid, cifar10, "
                                         "cifar100, digits, mnist, nyuv2, shapes"):
        data.load("cifar11", "train")
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load("digits", "validation")


def test_missing_tfds_data_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.tfds_sources.DatasetUnavailableError, match=r"--dataset=mnist: .*no network$"):
        data.load("mnist", "test", data_dir=str(tmp_path))


def _write_idx(path, magic, array):
    """An uncompressed MNIST (IDX) file: a header of big-endian int32s, then the uint8 values."""
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    return str(path)


def test_mnist_prepared_by_tfds_itself_from_local_files_then_loaded_offline(tmp_path, monkeypatch):
    """tfds's real download_and_prepare (not mock_data) on tiny local MNIST files, then a load without network.

    mock_data skips the prepare path, which is where tensorflow-datasets once failed to import
    `importlib_resources`; only the download itself is replaced here.
    """
    from tensorflow_datasets.image_classification import mnist

    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "test": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": np.array([0, 1, 2, 3, 4]), "test": np.array([7, 8, 9])}
    files = {}
    for split in ("train", "test"):
        files[f"{split}_data"] = _write_idx(tmp_path / f"{split}-images", 2051, images[split])
        files[f"{split}_labels"] = _write_idx(tmp_path / f"{split}-labels", 2049, labels[split])
    monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 5)
    monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 3)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", lambda self, urls: files)
    data_dir = tmp_path / "tensorflow_datasets"

    prepared = list(data.load("mnist", "test", data_dir=str(data_dir)).as_numpy_iterator())
    assert (data_dir / "mnist" / "3.0.1" / "dataset_info.json").exists()

    def offline(self, urls):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    loaded = list(data.load("mnist", "test", data_dir=str(data_dir)).as_numpy_iterator())
    for examples in (prepared, loaded):  # in tfds's shuffled order
        assert sorted(int(label) for _, label in examples) == [7, 8, 9]
        for image, label in examples:
            assert image.shape == (32, 32, 1)
            # resized 28 -> 32 bilinearly, then MNIST's normalisation: the image's mean is kept
            expected = (images["test"][label - 7].mean() / 255 - 0.1307) / 0.3081
            assert image.mean() == pytest.approx(expected, abs=0.02)
