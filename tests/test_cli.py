"""The absl binaries, run in-process on tiny configurations, and once each as real programs."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import flags

from dfad_tf import evaluation, export, fileio, models, objectives, precision
from dfad_tf.cli import distill, evaluate, export as export_binary, inspect as inspect_binary, train_teacher

from conftest import TINY, files_with_contents, one_line_error, real_program, run_binary, without_gpu


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits_teacher):
    """A tiny distillation of the session's digits teacher, with every output."""
    model_dir = tmp_path_factory.mktemp("run")
    assert run_binary(distill, f"--model_dir={model_dir}", f"--teacher={digits_teacher}", *TINY) == 0
    return model_dir


def test_distill_leaves_the_promised_outputs(finished_run, digits_arrays):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["teacher_accuracy"] > 0.9
    assert metrics["config"]["student"]["model"] == "lenet5_half" and metrics["config"]["schedule"]["batch_size"] == 16
    assert metrics["selection"]["monitor"] == "val_accuracy"
    # Each way of choosing the student, read off the history: labels pick the best epoch, the others may not.
    epochs = np.genfromtxt(finished_run / "history.csv", delimiter=",", names=True)
    choices = metrics["selections"]
    assert choices["best_epoch_with_labels"]["accuracy"] == pytest.approx(epochs["val_accuracy"].max())
    assert choices["best_epoch_with_labels"]["accuracy"] == pytest.approx(metrics["student_accuracy"])
    assert choices["last_epoch"] == {"epoch": 2, "accuracy": pytest.approx(epochs["val_accuracy"][-1])}
    agreed = int(np.argmax(epochs["gen_agreement"]))
    assert choices["best_gen_agreement"] == {"epoch": agreed + 1,
                                             "accuracy": pytest.approx(epochs["val_accuracy"][agreed])}
    chosen = int(epochs["run_choice"][-1])
    assert choices["run_choice"] == {"epoch": chosen, "accuracy": pytest.approx(epochs["val_accuracy"][chosen - 1])}
    # When the student first came within 2 points of the teacher, in epochs and wall seconds of distillation.
    reached = np.flatnonzero(epochs["val_accuracy"] >= metrics["teacher_accuracy"] - 0.02)
    first = metrics["within_2_points_of_teacher"]
    assert first == (None if reached.size == 0 else
                     {"epoch": reached[0] + 1, "seconds": pytest.approx(epochs["seconds"][reached[0]])})
    assert np.all(np.diff(epochs["seconds"]) > 0) and epochs["seconds"][-1] <= metrics["this_run"]["seconds"]
    history = (finished_run / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_accuracy" in history[0] and "gen_agreement" in history[0]
    assert sorted(os.listdir(finished_run / "samples")) == ["epoch_001.png", "epoch_002.png"]
    assert os.path.isdir(finished_run / "logs" / "samples")
    assert (finished_run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not os.path.exists(finished_run / "backup")  # removed after a finished run
    # The exported student is the saved best student, and its TFLite twin agrees with it.
    student = keras.saving.load_model(finished_run / "student.keras")
    images, labels = digits_arrays
    keras_logits = np.asarray(student(images))
    np.testing.assert_allclose(export.tflite_predict(finished_run / "student.tflite", images), keras_logits,
                               atol=1e-4)
    assert metrics["student_accuracy"] == pytest.approx(np.mean(keras_logits.argmax(-1) == labels))
    assert metrics["student_tflite_accuracy"] == pytest.approx(metrics["student_accuracy"])
    assert os.path.exists(finished_run / "student_savedmodel" / "saved_model.pb")
    generator = keras.saving.load_model(finished_run / "generator.keras")
    assert generator.output_shape == (None, 32, 32, 1)
    # Without a BatchNorm prior (a LeNet-5 teacher) the generator keeps Generator-A's standardising BN.
    assert metrics["config"]["objective"]["generate_pixels"] is False
    assert [layer.name for layer in generator.layers][-3:] == ["tanh", "out_bn", "pixel_range"]


def test_the_first_epoch_within_reach_of_the_teacher_is_read_off_the_history():
    rows = [{"epoch": "0", "val_accuracy": "0.5", "seconds": "10.0"},
            {"epoch": "1", "val_accuracy": "0.97", "seconds": "20.5"},
            {"epoch": "2", "val_accuracy": "0.99", "seconds": "31.0"}]
    assert evaluation.first_within(rows, 0.96) == {"epoch": 2, "seconds": 20.5}
    assert evaluation.first_within(rows, 0.995) is None
    assert evaluation.first_within([{"epoch": "0", "val_accuracy": "0.9"}], 0.8) == {"epoch": 1, "seconds": None}


def test_distillation_never_reads_a_training_image(tmp_path, digits_teacher, monkeypatch):
    from dfad_tf import data

    splits = []
    load = data.load
    monkeypatch.setattr(data, "load", lambda name, split, **kw: splits.append(split) or load(name, split, **kw))
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", *TINY) == 0
    assert splits == ["test"]


def test_distill_without_any_labelled_data_keeps_the_student_agreeing_best_on_the_run_images(
        tmp_path, digits_teacher, capsys):
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", "--dataset=none",
                      "--export=float32", *TINY) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "chosen without labels, by its agreement with the teacher" in capsys.readouterr().out
    choices = [int(float(row["run_choice"])) for row in fileio.read_csv(str(tmp_path / "history.csv"))]
    assert len(choices) > 1 and all(1 <= choice <= epoch for epoch, choice in enumerate(choices, 1))
    assert metrics["selection"] == {"monitor": "run_choice", "value": choices[-1], "epoch": choices[-1]}
    assert "student_accuracy" not in metrics
    assert os.path.exists(tmp_path / "student.tflite") and not os.path.exists(tmp_path / "student_savedmodel")


def copy_files(source, destination):
    for name in os.listdir(source):
        if os.path.isfile(source / name):
            (destination / name).write_bytes((source / name).read_bytes())


def test_a_worse_run_keeps_the_better_student_and_its_exports(tmp_path, finished_run, digits_teacher):
    copy_files(finished_run, tmp_path)
    record = json.loads((tmp_path / "student.json").read_text())
    (tmp_path / "student.json").write_text(json.dumps({**record, "value": 1.01}))  # unbeatable
    before = files_with_contents(tmp_path)
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", *TINY) == 0
    after = files_with_contents(tmp_path)
    for name in ("student.keras", "student.tflite", "generator.keras", "student.json"):
        assert after[name] == before[name], name
    metrics = json.loads(after["metrics.json"])
    assert metrics["this_run"]["replaced_student"] is False
    assert metrics["selection"]["value"] == 1.01


def test_a_diverging_student_stops_at_once_in_one_line_keeping_the_best_student(tmp_path, finished_run,
                                                                                 digits_teacher, capsys):
    copy_files(finished_run, tmp_path)
    before = files_with_contents(tmp_path)
    # The paper's recipe: the default's standardized logits keep loss_S bounded however far the student goes.
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", *TINY,
                      "--student_lr=1000", "--recipe=paper") == 2
    assert re.fullmatch(r".*: error: --student_lr: loss_S = \S+, over \S+ at DFAD iteration 1: the student "
                        r"diverged; try a lower --student_lr than 1000 \(the best student so far stays in "
                        r"--model_dir\)", one_line_error(capsys))
    after = files_with_contents(tmp_path)
    for name in ("student.keras", "student.json", "generator.keras", "student.tflite"):
        assert after[name] == before[name], name


def test_a_teacher_giving_nan_stops_the_run_naming_teacher_input_after_a_chance_warning(tmp_path, digits_teacher,
                                                                                         capsys, caplog):
    teacher = keras.saving.load_model(digits_teacher)
    last = teacher.layers[-1]
    last.bias.assign(np.where(np.arange(10) == 3, np.nan, np.asarray(last.bias)).astype("float32"))
    path = save_model(tmp_path / "nan_teacher.keras", teacher)
    assert run_binary(distill, f"--model_dir={tmp_path / 'run'}", f"--teacher={path}", *TINY) == 2
    assert re.search(r"--teacher_input: NaN or infinite loss at DFAD iteration 1: the teacher's outputs on generated "
                     r"images are not finite; check that --teacher_input=normalized is what it takes",
                     one_line_error(capsys))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(re.search(r"the teacher scores 0\.\d+ \(accuracy\) on held-out --dataset=digits, no better than always "
                         r"predicting one class .*check --teacher_input=normalized", w) for w in warnings), warnings
    assert not os.path.exists(tmp_path / "run" / "student.keras")


def save_model(path, model):
    model.save(path)
    return path


@pytest.mark.parametrize("make_teacher, expected", [
    (lambda d: d / "missing.keras", r"--teacher: .*missing.keras: no such file or directory"),
    (lambda d: (d / "corrupt.keras").write_bytes(b"not a zip") and d / "corrupt.keras",
     r"--teacher: .*corrupt.keras: cannot be read as a Keras model"),
    (lambda d: save_model(d / "wide.keras", models.build_classifier("lenet5", (36, 36, 1), 10)),
     r"--teacher: takes images of shape \(36, 36, 1\) but the dataset digits has \(32, 32, 1\)"),
    (lambda d: save_model(d / "five.keras", models.build_classifier("lenet5", (32, 32, 1), 5)),
     r"--teacher: predicts 5 classes but the dataset digits has 10"),
    (lambda d: save_model(d / "lambda.keras", keras.Sequential(
        [keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Lambda(lambda x: x[:, :10])])),
     r"--teacher: .*safe mode.*pass --allow_unsafe_teacher if you trust it"),
], ids=["missing", "corrupt", "input-shape", "class-count", "unsafe"])
def test_bad_teacher_is_one_line_and_leaves_earlier_results(tmp_path, capsys, make_teacher, expected):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "student.keras").write_bytes(b"an earlier best student")
    (model_dir / "metrics.json").write_text('{"student_accuracy": 0.95}')
    before = files_with_contents(model_dir)
    teacher = make_teacher(tmp_path)
    assert run_binary(distill, f"--model_dir={model_dir}", f"--teacher={teacher}", *TINY) == 2
    assert re.search(expected, one_line_error(capsys))
    assert files_with_contents(model_dir) == before
    assert sorted(os.listdir(model_dir)) == ["metrics.json", "student.keras"]
    new_dir = tmp_path / "new_run"
    assert run_binary(distill, f"--model_dir={new_dir}", f"--teacher={teacher}", *TINY) == 2
    assert re.search(expected, one_line_error(capsys))
    assert not new_dir.exists()  # no empty run folder left behind


def test_distill_writes_its_run_folder_through_tf_io_gfile(digits_teacher):
    """ram:// is TensorFlow's in-memory filesystem: reached only through tf.io.gfile, as gs:// is."""
    import tensorflow as tf

    model_dir = "ram://distill_run"
    try:
        assert run_binary(distill, f"--model_dir={model_dir}", f"--teacher={digits_teacher}", *TINY) == 0
        assert set(tf.io.gfile.listdir(model_dir)) >= {
            "student.keras", "student.json", "generator.keras", "metrics.json", "history.csv", "student.tflite",
            "student_savedmodel", "logs", "samples"}
        with tf.io.gfile.GFile(f"{model_dir}/metrics.json") as file:
            metrics = json.load(file)
        assert metrics["student_tflite_accuracy"] == pytest.approx(metrics["student_accuracy"], abs=0.01)
        with tf.io.gfile.GFile(f"{model_dir}/history.csv") as file:
            assert len(file.read().splitlines()) == 1 + 2  # a header and the 2 epochs
        assert not os.path.exists("ram:")
    finally:
        tf.io.gfile.rmtree(model_dir)


def test_model_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a run folder")
    with pytest.raises(flags.IllegalFlagValueError, match="--model_dir names an existing file; give a folder"):
        run_binary(distill, f"--model_dir={path}", *TINY)
    assert path.read_text() == "not a run folder" and os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("flag, expected", [
    ("--dataset=none", r"--teacher: required with dataset 'none' \(a \.keras file or SavedModel\)"),
    ("--teacher_input=unit", r"--teacher_input: applies to a teacher file"),
])
def test_flags_that_need_a_teacher_file_say_so(tmp_path, capsys, flag, expected):
    assert run_binary(distill, f"--model_dir={tmp_path}", flag, *TINY) == 2
    assert re.search(expected, one_line_error(capsys))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, flag", [
    (["--batch_size=0"], "batch_size"),
    (["--epochs=-1"], "epochs"),
    (["--iterations_per_epoch=0"], "iterations_per_epoch"),
    (["--imitation_steps=0"], "imitation_steps"),
    (["--student_lr=0"], "student_lr"),
    (["--generator_lr=-0.001"], "generator_lr"),
    (["--lr_decay_epochs=10,x"], "lr_decay_epochs"),
    (["--student=lenet7"], "student"),
    (["--dataset=cifar11"], "dataset"),
    (["--loss=l3"], "loss"),
])
def test_bad_flag_values_name_the_flag(tmp_path, args, flag):
    with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag}"):
        run_binary(distill, f"--model_dir={tmp_path}", *args)
    assert os.listdir(tmp_path) == []


def test_train_teacher_then_evaluate(tmp_path, capsys):
    assert run_binary(train_teacher, f"--model_dir={tmp_path}", "--teacher_epochs=2") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["teacher_accuracy"] > 0.3  # two epochs: well above the 0.1 of chance
    capsys.readouterr()
    assert run_binary(evaluate, f"--model={tmp_path / 'teacher.keras'}") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["accuracy"] == pytest.approx(metrics["teacher_accuracy"]) and result["examples"] == 540
    # A worse teacher (no training at all) does not replace it.
    before = (tmp_path / "teacher.keras").read_bytes()
    assert run_binary(train_teacher, f"--model_dir={tmp_path}", "--teacher_epochs=1", "--teacher_lr=1e-9") == 0
    assert (tmp_path / "teacher.keras").read_bytes() == before


def test_evaluate_rejects_a_missing_model(tmp_path, capsys):
    assert run_binary(evaluate, f"--model={tmp_path / 'nothing.tflite'}") == 2
    assert one_line_error(capsys).endswith(f"--model: {tmp_path / 'nothing.tflite'}: no such file")


def test_export_binary_writes_every_variant_and_a_computed_report(tmp_path, finished_run, digits_teacher,
                                                                  digits_arrays, capsys, monkeypatch):
    copy_files(finished_run, tmp_path)
    student_modes = []  # the quantization-aware iterations run the generator's step as the run did
    objective = objectives.GeneratorObjective
    monkeypatch.setattr(objectives, "GeneratorObjective", lambda *args, student_training=True, **kwargs: (
        student_modes.append(student_training) or objective(*args, student_training=student_training, **kwargs)))
    assert run_binary(export_binary, f"--run_dir={tmp_path}", f"--teacher={digits_teacher}", "--qat_iterations=2",
                      "--qat_batch_size=8", "--calibration_images=16") == 0
    report = json.loads((tmp_path / "export_report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["keras", "float32", "float16", "dynamic_int8", "int8", "qat_int8",
                          "int8_noise_calibrated", "int8_real_calibrated"]
    assert "int8_real_calibrated" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "run_config.json").read_text())["objective"]
    assert student_modes == [recorded["student_training_in_generator_step"]] == [False]  # the robust recipe's
    # The numbers are measured from the files, not copied: recompute the int8 row.
    images, labels = digits_arrays
    path = tmp_path / "student_int8.tflite"
    outputs = export.tflite_predict(path, images)
    reference = np.asarray(keras.saving.load_model(tmp_path / "student.keras")(images))
    assert rows["int8"]["size_bytes"] == os.path.getsize(path)
    assert rows["int8"]["size_vs_float32"] == pytest.approx(os.path.getsize(path) / rows["float32"]["size_bytes"],
                                                            abs=1e-4)
    assert rows["int8"]["accuracy"] == pytest.approx(np.mean(outputs.argmax(-1) == labels))
    assert rows["int8"]["agreement"] == pytest.approx(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    assert rows["int8"]["max_logit_diff"] == pytest.approx(np.abs(outputs - reference).max(), rel=1e-5)
    assert rows["float32"]["agreement"] >= 0.999 and rows["int8"]["latency_ms"] > 0
    assert rows["int8_noise_calibrated"]["file"] is None  # references are measured, not shipped
    assert not os.path.exists(tmp_path / "int8_noise_calibrated.tflite")


def test_export_for_the_edge_bakes_in_the_pixels_and_says_so(tmp_path, finished_run, digits_arrays, capsys):
    from dfad_tf.data import digits

    copy_files(finished_run, tmp_path)
    edge = tmp_path / "edge"
    assert run_binary(export_binary, f"--run_dir={tmp_path}", f"--output_dir={edge}", "--input=uint8",
                      "--output=probabilities", "--variants=float32", "--noreferences", "--nosaved_model") == 0
    report = json.loads((edge / "export_report.json").read_text())
    assert report["interface"]["input"] == {
        "name": "images", "shape": [None, 32, 32, 1], "dtype": "uint8", "range": [0, 255],
        "meaning": "pixels as a camera gives them; the file normalises them", "mean": [0.1307], "std": [0.3081],
        "unit_pixel_to_student_input": {"scale": [pytest.approx(1 / 0.3081)],
                                        "offset": [pytest.approx(-0.1307 / 0.3081)]}}
    assert report["interface"]["output"]["kind"] == "probabilities" and report["interface"]["output"]["classes"] == 10
    pixels, labels = digits.pixels("test")
    probabilities = export.tflite_predict(edge / "student.tflite", pixels)
    student_accuracy = json.loads((finished_run / "metrics.json").read_text())["student_accuracy"]
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["float32"]["accuracy"] == pytest.approx(np.mean(probabilities.argmax(-1) == labels))
    assert abs(rows["float32"]["accuracy"] - student_accuracy) <= 0.01
    assert rows["float32"]["input_dtype"] == "uint8" and rows["float32"]["max_probability_diff"] < 0.01
    before = files_with_contents(tmp_path)
    assert run_binary(export_binary, f"--run_dir={tmp_path}", "--input=uint8", "--int8_io") == 2
    assert "--int8_io: gives the int8 file int8 inputs, but --input=uint8 files take pixels" in one_line_error(capsys)
    assert files_with_contents(tmp_path) == before


def test_export_without_a_generator_is_one_line(tmp_path, finished_run, capsys):
    copy_files(finished_run, tmp_path)
    os.remove(tmp_path / "generator.keras")
    before = files_with_contents(tmp_path)
    assert run_binary(export_binary, f"--run_dir={tmp_path}", "--variants=float32,int8") == 2
    assert re.search(r"--generator_path: .*generator.keras: no such file", one_line_error(capsys))
    assert files_with_contents(tmp_path) == before
    with pytest.raises(flags.IllegalFlagValueError, match="--variants"):
        run_binary(export_binary, f"--run_dir={tmp_path}", "--variants=float32,int4")


def test_qat_without_its_packages_names_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    from dfad_tf import qat

    assert qat.missing_packages() == []  # the test extra installs the qat extra
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow_model_optimization" else find_spec(name, *args))
    assert run_binary(export_binary, f"--run_dir={tmp_path}", "--qat_iterations=5") == 2
    assert one_line_error(capsys).endswith("--qat_iterations: needs tensorflow_model_optimization, installed by the "
                                           "qat extra: pip install 'dfad_tf[qat]'")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def unit_teacher(tmp_path_factory, digits_teacher):
    """The digits teacher behind a layer that takes [0, 1] pixels: a teacher with another convention."""
    teacher = keras.saving.load_model(digits_teacher)
    inputs = keras.Input((32, 32, 1))
    normalised = keras.layers.Rescaling(1 / 0.3081, -0.1307 / 0.3081)(inputs)
    path = tmp_path_factory.mktemp("unit") / "unit_teacher.keras"
    keras.Model(inputs, teacher(normalised), name="unit_teacher").save(path)
    return path


def test_teacher_input_convention_maps_generated_and_evaluation_images(tmp_path, unit_teacher, digits_teacher,
                                                                       digits_arrays):
    images, labels = digits_arrays
    expected = np.mean(np.asarray(keras.saving.load_model(digits_teacher)(images)).argmax(-1) == labels)
    accuracies = {}
    for convention, epochs in (("unit", 2), ("normalized", 1)):  # the second run only measures the teacher
        model_dir = tmp_path / convention
        assert run_binary(distill, f"--model_dir={model_dir}", f"--teacher={unit_teacher}",
                          f"--teacher_input={convention}", "--export=float32", *TINY, f"--epochs={epochs}") == 0
        accuracies[convention] = json.loads((model_dir / "metrics.json").read_text())["teacher_accuracy"]
    assert accuracies["unit"] == pytest.approx(expected)  # the teacher sees exactly what it was trained on
    assert accuracies["normalized"] != pytest.approx(expected)  # the wrong convention changes what it sees
    generator = keras.saving.load_model(tmp_path / "unit" / "generator.keras")
    # The default recipe then clips the pixels to [0, 1], the real range in that convention.
    assert [layer.name for layer in generator.layers[-2:]] == ["to_teacher_input", "pixel_range"]
    # The student takes the teacher's convention: its TFLite accuracy is measured on [0, 1] pixels.
    metrics = json.loads((tmp_path / "unit" / "metrics.json").read_text())
    unit_images = images * 0.3081 + 0.1307
    student_outputs = export.tflite_predict(tmp_path / "unit" / "student.tflite", unit_images)
    assert metrics["student_tflite_accuracy"] == pytest.approx(np.mean(student_outputs.argmax(-1) == labels))


def test_export_and_evaluate_take_the_dataset_and_convention_from_the_run(tmp_path, digits_teacher, digits_arrays,
                                                                           capsys):
    inputs = keras.Input((32, 32, 1))  # the digits teacher behind a layer that takes [0, 255] pixels
    byte_teacher = keras.Model(inputs, keras.saving.load_model(digits_teacher)(
        keras.layers.Rescaling(1 / (255 * 0.3081), offset=-0.1307 / 0.3081)(inputs)))
    byte_teacher.save(tmp_path / "byte_teacher.keras")
    run_dir = tmp_path / "run"
    assert run_binary(distill, f"--model_dir={run_dir}", f"--teacher={tmp_path / 'byte_teacher.keras'}",
                      "--teacher_input=byte", "--export=float32", *TINY) == 0
    byte_teacher.save(run_dir / "student.keras")  # a student that learned: the teacher itself
    images, labels = digits_arrays
    on_byte_pixels = np.mean(np.asarray(byte_teacher((images * 0.3081 + 0.1307) * 255)).argmax(-1) == labels)
    assert on_byte_pixels > 0.9 > np.mean(np.asarray(byte_teacher(images)).argmax(-1) == labels) + 0.5  # it matters
    capsys.readouterr()
    assert run_binary(evaluate, f"--run_dir={run_dir}") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == pytest.approx(on_byte_pixels)
    assert run_binary(export_binary, f"--run_dir={run_dir}", "--variants=float32", "--nosaved_model",
                      "--noreferences") == 0
    rows = {row["name"]: row for row in json.loads((run_dir / "export_report.json").read_text())["rows"]}
    assert rows["keras"]["accuracy"] == pytest.approx(on_byte_pixels)
    assert rows["float32"]["accuracy"] == pytest.approx(on_byte_pixels, abs=0.01)
    # Given again, a convention must agree with the run's.
    assert run_binary(evaluate, f"--run_dir={run_dir}", "--teacher_input=normalized") == 2
    assert one_line_error(capsys).endswith(f"--teacher_input: normalized disagrees with the run in {run_dir}, made "
                                           "with byte; leave it out")


def test_a_rerun_keeps_the_recorded_configuration_for_flags_not_given(tmp_path, unit_teacher):
    args = [f"--model_dir={tmp_path}", "--export=float32", *TINY]
    assert run_binary(distill, *args, "--epochs=1", f"--teacher={unit_teacher}", "--teacher_input=unit",
                      "--student_lr=0.05") == 0
    assert run_binary(distill, *args) == 0  # resumes: the same teacher and convention, one more epoch (TINY's 2)
    recorded = json.loads((tmp_path / "run_config.json").read_text())
    assert recorded["teacher"]["path"] == str(unit_teacher) and recorded["teacher"]["input"] == "unit"
    assert recorded["student"]["learning_rate"] == 0.05 and recorded["schedule"]["epochs"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["this_run"]["total_iterations"] == 4


def test_a_wrong_teacher_input_is_warned_and_recorded(tmp_path, unit_bn_teacher, caplog, capsys):
    path = tmp_path / "teacher.keras"
    unit_bn_teacher.save(path)  # takes [0, 1] pixels, run with [0, 255] (the right flag: tests/test_conventions.py)
    # With the paper's recipe, on images 255 times too large the student diverges at once, and the error
    # points at the convention (the default's standardized discrepancy stays finite).
    assert run_binary(distill, f"--model_dir={tmp_path / 'run'}", f"--teacher={path}", "--teacher_input=byte",
                      "--export=float32", "--recipe=paper", *TINY) == 2
    assert re.search(r"--teacher_input: loss_S = .* the student diverged on images in the wrong range; try "
                     r"--teacher_input=unit", one_line_error(capsys))
    warnings = [record.getMessage() for record in caplog.records if "looks wrong" in record.getMessage()]
    assert len(warnings) == 1 and "rerun with --teacher_input=unit" in warnings[0]
    check = json.loads((tmp_path / "run" / "metrics.json").read_text())["teacher_input_check"]
    assert check["suggestion"] == "unit"
    assert check["batchnorm_mismatch"]["byte"] > 1000 * check["batchnorm_mismatch"]["unit"]


def test_inspect_reports_hand_checkable_numbers(digits_teacher, capsys):
    assert run_binary(inspect_binary, f"--teacher={digits_teacher}", "--json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["teacher"]["parameters"] == 61_706 and report["teacher"]["macs_per_image"] == 416_520
    assert report["teacher"]["input_shape"] == [32, 32, 1] and report["teacher"]["batchnorm_layers"] == 0
    students = {row["name"]: row for row in report["students"]}
    assert students["lenet5_half"]["macs_per_image"] == 133_740
    assert students["lenet5_half"]["int8_bytes_estimate"] == 15_738
    assert set(students) == set(models.CLASSIFIERS)
    assert run_binary(inspect_binary, f"--teacher={digits_teacher}") == 0
    assert "lenet5_half" in capsys.readouterr().out


def test_real_program_end_to_end_on_a_tiny_configuration(tmp_path):
    result = real_program("distill", f"--model_dir={tmp_path}", "--teacher_epochs=2", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Best student chosen by val_accuracy" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"teacher_accuracy", "student_accuracy", "config"} <= set(metrics)
    for name in ("teacher.keras", "student.keras", "student.tflite", "student_savedmodel"):
        assert os.path.exists(tmp_path / name), name


def test_real_program_reports_bad_input_in_one_line(tmp_path):
    result = real_program("distill", f"--model_dir={tmp_path}", "--batch_size=0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Flags parsing error: flag --batch_size=0: 0 is not a positive integer" in result.stderr
    result = real_program("distill", f"--model_dir={tmp_path}", f"--teacher={tmp_path / 'none.keras'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("distill.py: error: --teacher: ")


def test_help_of_an_installed_binary_shows_its_own_flags(tmp_path):
    # What pip's console script dfad-export is: a __main__ with no docstring and no flags of its own.
    script = tmp_path / "dfad-export"
    script.write_text("import sys\nfrom dfad_tf.cli.export import run\nsys.exit(run())\n")
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    shown = set(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.MULTILINE))
    assert result.stdout.startswith("Export a distilled student for the edge")
    assert {"run_dir", "input", "output", "variants", "qat_iterations"} <= shown  # its own
    assert {"dataset", "teacher_input", "int8_io", "calibration_images"} <= shown  # the shared ones it reads
    assert not shown & {"teacher_epochs", "student_lr", "tpu", "only_check_args", "test_srcdir"}


def test_python_m_dfad_tf_lists_every_binary_of_setup_py():
    result = subprocess.run([sys.executable, "-m", "dfad_tf"], capture_output=True, text=True, timeout=60, check=True)
    listed = re.findall(r"^  (dfad-[\w-]+) +(.+)$", result.stdout, re.MULTILINE)
    with open(os.path.join(os.path.dirname(__file__), "..", "setup.py")) as f:
        installed = re.findall(r'"(dfad-[\w-]+)=dfad_tf\.cli\.\w+:run"', f.read())
    assert sorted(command for command, _ in listed) == sorted(installed)
    assert dict(listed)["dfad-export"] == ("Export a distilled student for the edge, "
                                           "with a report of what each variant costs.")


GOOD_CLUSTER = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                           "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("args, tf_config, expected", [
    (["--strategy=multi_worker"], "{oops", r"--strategy: TF_CONFIG is not JSON \(.*\); e\.g\. \{"),
    (["--strategy=auto"], '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
     r'--strategy: TF_CONFIG "task" must name a job of the cluster and an index into its list'),
    (["--strategy=multi_worker"], None, r"--strategy: multi_worker needs the TF_CONFIG environment variable"),
    (["--strategy=multi_worker"], GOOD_CLUSTER, r"--teacher: a multi-worker run needs a trained teacher file"),
    pytest.param(["--mixed_precision=mixed_float16"], None, r"--mixed_precision: mixed_float16 needs GPUs of compute "
                 r"capability 7\.0 or more, found none", marks=without_gpu),
    (["--strategy=tpu"], None, r"--strategy: tpu: no TPU could be reached \("),
], ids=["tf-config-not-json", "tf-config-bad-task", "no-tf-config", "multi-worker-untrained-teacher", "float16-cpu",
        "no-tpu"])
def test_bad_distribution_input_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, args, tf_config, expected):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert run_binary(distill, f"--model_dir={tmp_path}", *TINY, *args) == 2
    assert re.search(expected, one_line_error(capsys))
    assert os.listdir(tmp_path) == []


def test_global_batch_must_split_evenly_across_replicas(tmp_path, capsys, monkeypatch, digits_teacher):
    from types import SimpleNamespace

    from dfad_tf import distribute

    monkeypatch.setattr(distribute, "make_strategy", lambda name: SimpleNamespace(num_replicas_in_sync=3))
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", *TINY) == 2
    assert one_line_error(capsys).endswith("--batch_size: 16 does not split evenly across the 3 replicas of "
                                           "the default strategy; use a multiple of 3")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(precision.unsupported("mixed_bfloat16") is not None, reason="no bfloat16 instructions here")
def test_mixed_bfloat16_run_saves_and_exports_float32_models(tmp_path, digits_teacher, digits_arrays):
    # auto is mixed_bfloat16 on a processor with bfloat16 instructions, and the run records what it resolved to
    assert run_binary(distill, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}",
                      "--mixed_precision=auto", "--export=float32", *TINY) == 0
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for whatever runs next
    for name in ("student.keras", "generator.keras"):
        model = keras.saving.load_model(tmp_path / name)
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["precision"]["mixed_precision"] == "mixed_bfloat16"
    assert metrics["student_tflite_accuracy"] == pytest.approx(metrics["student_accuracy"])


@pytest.mark.skipif(precision.unsupported("mixed_bfloat16") is not None, reason="no bfloat16 instructions here")
def test_a_batchnorm_teacher_gets_the_prior_a_generator_of_pixels_and_float32_under_auto_precision(
        tmp_path, unit_bn_teacher):
    path = tmp_path / "teacher.keras"
    unit_bn_teacher.save(path)
    assert run_binary(distill, f"--model_dir={tmp_path / 'run'}", f"--teacher={path}", "--teacher_input=unit",
                      "--mixed_precision=auto", "--export=float32", *TINY) == 0
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert config["objective"]["generator_loss_weights"]["batchnorm"] == 1.0  # the recipe turned the prior on
    assert config["precision"]["mixed_precision"] == "float32"
    # The generator ends at its tanh, read as pixels in the teacher's [0, 1]: -1 black, 1 white.
    assert config["objective"]["generate_pixels"] is True
    generator = keras.saving.load_model(tmp_path / "run" / "generator.keras")
    assert [layer.name for layer in generator.layers][-4:] == ["to_image", "tanh", "to_teacher_input", "pixel_range"]
    tanh = keras.Model(generator.inputs, generator.get_layer("tanh").output)
    noise = np.random.default_rng(0).standard_normal((16, generator.input_shape[-1])).astype("float32")
    np.testing.assert_allclose(generator(noise), (np.asarray(tanh(noise)) + 1) / 2, atol=1e-6)


def test_auto_precision_is_bfloat16_only_where_the_processor_has_it(monkeypatch):
    monkeypatch.setattr(precision, "_gpu_capabilities", list)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert precision.resolve("auto") == "mixed_bfloat16"
    assert precision.resolve("auto", batchnorm_prior=True) == "float32"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f"})
    assert precision.unsupported("auto") is None and precision.resolve("auto") == "float32"
    assert precision.resolve("mixed_float16") == "mixed_float16"  # a named policy is kept
