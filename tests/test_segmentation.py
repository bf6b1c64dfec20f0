"""Segmentation: DeepLabV3 models, mean IoU, per-pixel distillation, and the binaries on the shapes set."""

import json
import os
import re

import keras
import numpy as np
import pytest

from dfad_tf import callbacks, data, evaluation, export, models, optimizers, profile, recipes, teacher
from dfad_tf.cli import distill, evaluate, train_teacher
from dfad_tf.data import shapes
from dfad_tf.distiller import DataFreeDistiller
from dfad_tf.models import segmentation

from conftest import files_with_contents, one_line_error, run_binary

NUM_CLASSES = 4


def conv_bn_params(inputs, outputs, kernel=1):
    return kernel * kernel * inputs * outputs + 4 * outputs  # no conv bias; BN gamma, beta, mean, variance


def test_deeplab_resnet50_has_the_backbone_and_head_we_count_by_hand():
    model = models.build_model("deeplabv3_resnet50", (128, 128, 3), 11)
    backbone = 23_587_712  # keras.applications.ResNet50(include_top=False): documented count
    aspp = conv_bn_params(2048, 256) * 2 + conv_bn_params(2048, 256, 3) * 3  # 1x1, pooling, 3 atrous branches
    head = conv_bn_params(5 * 256, 256) + conv_bn_params(256, 256, 3) + 256 * 11 + 11
    assert model.count_params() == backbone + aspp + head
    assert model.output_shape == (None, None, None, 11)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_atrous_backbone_keeps_weights_and_reaches_its_output_stride(tmp_path, output_stride):
    original = keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=0.35, include_top=False,
                                              weights=None)
    weights = str(tmp_path / "notop.weights.h5")
    original.save_weights(weights)
    backbone = segmentation.atrous_backbone("mobilenet_v2", (None, None, 3), output_stride, 0.35, weights)
    assert backbone(np.zeros((1, 64, 96, 3), "float32")).shape == (1, 64 // output_stride, 96 // output_stride, 112)
    for layer in backbone.layers[1:]:  # after the input
        for mine, theirs in zip(layer.get_weights(), original.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    dilations = {layer.name: layer.dilation_rate for layer in backbone.layers if hasattr(layer, "dilation_rate")}
    assert dilations["block_16_depthwise"] == ((2, 2) if output_stride == 16 else (4, 4))
    assert dilations["block_5_depthwise"] == (1, 1)


def test_segmenter_takes_any_size_and_counts_macs_at_one():
    model = models.build_model("deeplabv3_mobilenet_v2", (48, 48, 3), NUM_CLASSES, width=0.25, output_stride=16)
    assert model(np.zeros((2, 40, 56, 3), "float32")).shape == (2, 40, 56, NUM_CLASSES)
    assert models.takes(model, (256, 341, 3)) and not models.takes(model, (256, 341, 1))
    assert profile.macs_per_image(model) is None  # any size: no single count
    small, large = profile.macs_per_image(model, (64, 64, 3)), profile.macs_per_image(model, (128, 128, 3))
    assert 3.5 * small < large <= 4 * small  # four times the pixels; the pooling branch does not grow


def test_generator_b_makes_the_papers_non_square_images():
    generator = models.build_generator("generator_b", 16, (256, 341, 3), width=2)
    images = generator(np.random.default_rng(0).standard_normal((2, 16)).astype("float32"), training=True)
    assert images.shape == (2, 256, 341, 3)
    assert np.all(np.abs(images) <= 1) and np.std(images) > 0.01  # tanh output, not constant


def test_mean_iou_against_hand_counts():
    labels = np.array([[0, 0, 1, 2, 255]])
    predictions = np.array([[0, 1, 1, 1, 0]])
    logits = np.eye(3)[predictions]
    # class 0: 1 / 2; class 1: 1 / 3; class 2: 0 / 1; the 255 pixel counts nowhere
    assert evaluation.mean_iou(logits, labels, 3, ignore_label=255) == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    # a class in neither labels nor predictions is left out of the mean
    assert evaluation.mean_iou(np.eye(4)[predictions], labels, 4, ignore_label=255) == pytest.approx(
        (1 / 2 + 1 / 3) / 3)


@pytest.fixture(scope="module")
def shapes_test():
    """The shapes test split, normalised as the binaries load it: `(images, labels)`."""
    return evaluation.arrays(data.load("shapes", "test"))


def small_segmenter(width):
    return models.build_model("deeplabv3_mobilenet_v2", shapes.SPEC.image_shape, NUM_CLASSES, width=width)


def test_one_dfad_iteration_moves_student_and_generator_not_teacher_and_validates_by_miou(shapes_test):
    teacher, student = small_segmenter(0.35), small_segmenter(0.25)
    generator = models.build_generator("generator_b", 16, shapes.SPEC.image_shape, width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=1)
    distiller.compile(*optimizers.paper_optimizers(0.1, 1e-3), loss="mae",
                      metrics=[keras.metrics.MeanIoU(NUM_CLASSES, name="miou", ignore_class=255,
                                                     sparse_y_pred=False)])
    before = [[v.numpy().copy() for v in m.trainable_variables] for m in (teacher, student, generator)]
    images, labels = shapes_test[0][:8], shapes_test[1][:8]
    history = distiller.fit(batch_size=4, steps_per_epoch=1, epochs=1, validation_data=(images, labels), verbose=0)
    teacher_changed, student_changed, generator_changed = (
        any(not np.array_equal(a, v.numpy()) for a, v in zip(old, m.trainable_variables))
        for old, m in zip(before, (teacher, student, generator)))
    assert student_changed and generator_changed and not teacher_changed
    expected = evaluation.mean_iou(student(images, training=False), labels, NUM_CLASSES, 255)
    assert history.history["val_miou"][0] == pytest.approx(expected, abs=1e-5)


def test_generated_samples_are_drawn_beside_the_teachers_masks(tmp_path):
    teacher = small_segmenter(0.25)
    generator = models.build_generator("generator_b", 16, shapes.SPEC.image_shape, width=4)
    distiller = DataFreeDistiller(teacher, small_segmenter(0.25), generator, imitation_steps=1)
    pictures = callbacks.GeneratedImages(str(tmp_path / "logs"), str(tmp_path / "samples"), num_images=4)
    pictures.set_model(distiller)
    pictures.on_epoch_end(0)
    grid = keras.utils.load_img(tmp_path / "samples" / "epoch_001.png")
    height, width = shapes.SPEC.image_shape[:2]
    assert grid.size == (2 * 2 * width, 2 * height)  # 2x2 pairs of (sample, mask)
    masks = np.argmax(teacher(generator(callbacks._fixed_latents(4, 16, 0), training=False)), axis=-1)
    np.testing.assert_allclose(np.asarray(grid)[:height, width:2 * width] / 255,
                               callbacks.color_masks(masks[:1], NUM_CLASSES)[0], atol=1 / 255)


@pytest.fixture(scope="module")
def shapes_teacher(tmp_path_factory):
    """An untrained small DeepLab "teacher" for the shapes set: the binaries' plumbing, not its quality."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("seg_teacher") / "teacher.keras"
    small_segmenter(0.25).save(path)
    return path


SEG_TINY = ["--dataset=shapes", "--student=deeplabv3_mobilenet_v2", "--student_width=0.25", "--generator=generator_b",
            "--generator_width=4", "--latent_dim=16", "--batch_size=4", "--epochs=1", "--iterations_per_epoch=1",
            "--imitation_steps=1", "--calibration_images=8"]


def test_distill_segmentation_reports_miou_and_exports_matching_tflite_masks(tmp_path, shapes_teacher, shapes_test):
    assert run_binary(distill, f"--model_dir={tmp_path}",
                      f"--teacher={shapes_teacher}", *SEG_TINY, "--export=float32", "--export=int8") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    images, labels = shapes_test
    student = keras.saving.load_model(tmp_path / "student.keras")
    keras_logits = evaluation.predict(student, images, batch_size=32)
    assert metrics["student_miou"] == pytest.approx(evaluation.mean_iou(keras_logits, labels, NUM_CLASSES, 255))
    assert metrics["selection"]["monitor"] == "val_miou" and "teacher_miou" in metrics
    # a BatchNorm student: the default recipe keeps the average of its weights, and the run records it
    recorded = json.loads((tmp_path / "run_config.json").read_text())["objective"]
    assert recorded["student_average"] == recipes.RECIPES["robust"].student_average > 0
    tflite_masks = np.argmax(export.tflite_predict(tmp_path / "student.tflite", images[:16]), axis=-1)
    assert np.mean(tflite_masks == keras_logits[:16].argmax(-1)) > 0.999
    assert metrics["student_tflite_miou"] == pytest.approx(metrics["student_miou"], abs=1e-3)
    int8_masks = np.argmax(export.tflite_predict(tmp_path / "student_int8.tflite", images[:16]), axis=-1)
    assert int8_masks.shape == (16, 64, 64)  # calibrated on generated 48x48 images, run on whole 64x64 ones
    for name in ("epoch_001.png", "real_epoch_001.png"):
        assert os.path.getsize(tmp_path / "samples" / name) > 0


def test_teacher_training_targets_skip_ignored_pixels():
    images, labels = shapes.arrays("train")
    image, label = images[0], labels[0]
    _, targets, weights = teacher._training_pairs(shapes.SPEC)(image, label)
    ignored = label == 255
    assert ignored.any() and np.array_equal(np.asarray(weights), (~ignored).astype("float32"))
    np.testing.assert_array_equal(np.argmax(targets, -1)[~ignored], label[~ignored])


def test_evaluate_binary_reports_miou(capsys, shapes_teacher, shapes_test):
    assert run_binary(evaluate, f"--model={shapes_teacher}", "--dataset=shapes") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    images, labels = shapes_test
    model = keras.saving.load_model(shapes_teacher)
    assert result["miou"] == pytest.approx(evaluation.mean_iou(evaluation.predict(model, images, 32), labels,
                                                               NUM_CLASSES, 255))


def save_model(path, model):
    model.save(path)
    return path


def grey_segmenter():
    return models.build_model("deeplabv3_mobilenet_v2", (8, 8, 1), 4)


def fixed_size_segmenter():
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 1)])


@pytest.mark.parametrize("args, expected", [
    (lambda d, t: [f"--teacher={t}", "--dataset=digits"],
     r"--teacher: is a segmentation model but the dataset digits is classification"),
    (lambda d, t: [f"--teacher={t}", "--student=lenet5_half"],
     r"--student: lenet5_half is a classification model but the teacher is a segmentation model"),
    (lambda d, t: [f"--teacher={save_model(d / 'grey.keras', grey_segmenter())}"],
     r"--teacher: takes images of shape \(None, None, 1\) but the dataset shapes has \(48, 48, 3\)"),
    (lambda d, t: [f"--teacher={save_model(d / 'fixed.keras', fixed_size_segmenter())}", "--dataset=none",
                   "--image_size=48,48"],
     r"--image_size: the teacher only takes images of shape \(32, 32, 3\)"),
    (lambda d, t: [f"--teacher={t}", "--dataset=none"],
     r"--image_size: the teacher takes images of any size: say which to generate"),
], ids=["task-vs-dataset", "task-vs-student", "channels", "fixed-size", "no-size"])
def test_bad_segmentation_input_is_one_line_and_writes_nothing(tmp_path, capsys, shapes_teacher, args, expected):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "metrics.json").write_text('{"student_miou": 0.5}')
    before = files_with_contents(model_dir)
    arguments = [*SEG_TINY, *args(tmp_path, shapes_teacher)]
    assert run_binary(distill, f"--model_dir={model_dir}", *arguments) == 2
    assert re.fullmatch(r"\S+: error: " + expected + r".*", one_line_error(capsys))
    assert files_with_contents(model_dir) == before


@pytest.mark.parametrize("args, expected", [
    (lambda d: ["--dataset=camvid", f"--data_dir={d}", "--teacher_model=deeplabv3_mobilenet_v2"],
     r"--data_dir: --dataset=camvid: expected \S+/train .*"),
    (lambda d: ["--dataset=shapes", "--teacher_model=lenet5"],
     r"--teacher_model: lenet5 is a classification model but the dataset shapes is segmentation"),
], ids=["camvid-layout", "classifier-teacher"])
def test_bad_segmentation_teacher_training_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    (tmp_path / "images").mkdir()  # a CamVid folder without its train/ folders
    assert run_binary(train_teacher, f"--model_dir={tmp_path / 'run'}", *args(tmp_path)) == 2
    assert re.fullmatch(r"\S+: error: " + expected, one_line_error(capsys))
    assert not (tmp_path / "run").exists()
