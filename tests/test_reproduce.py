"""The reproduce runner end to end on a tiny configuration, its resume, its bad input, and the KD baseline."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from dfad_tf import baselines, models
from dfad_tf.cli import reproduce

from conftest import TINY, one_line_error, run_binary


def test_kd_without_labels_learns_from_the_teacher_alone(digits_teacher, digits_arrays):
    teacher = keras.saving.load_model(digits_teacher)
    images, labels = digits_arrays
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    history = baselines.knowledge_distillation(teacher, student, images[:256], None, validation_data=digits_arrays,
                                               epochs=1, steps_per_epoch=60, batch_size=64, learning_rate=0.05)
    assert history.history["val_accuracy"][-1] > 0.5  # chance is 0.1; labels were never given


def test_runner_table_end_to_end_then_resumes_skipping_finished_cells(tmp_path, digits_teacher, capsys):
    args = [f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", "--seeds=2", *TINY,
            "--methods=teacher,kd_ori,kd_unr,random,dafl,dfad"]
    assert run_binary(reproduce, *args) == 0
    table = (tmp_path / "table.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert [(row["method"], row["seed"]) for row in rows] == [("teacher", "0")] + [
        (method, str(seed)) for method in ("kd_ori", "kd_unr", "random", "dafl", "dfad") for seed in (0, 1)]
    for row in rows:
        cell = json.loads((tmp_path / "table" / row["method"] / f"seed_{row['seed']}" / "cell.json").read_text())
        assert float(row["best_accuracy"]) == pytest.approx(max(cell["val_accuracy"]), abs=1e-4)
        assert len(cell["val_accuracy"]) == (1 if row["method"] == "teacher" else 2)
    best = {row["method"]: [float(r["best_accuracy"]) for r in rows if r["method"] == row["method"]] for row in rows}
    assert f"| dfad | {np.mean(best['dfad']):.3f} +- {np.std(best['dfad']):.3f} | 2 |" in table
    assert best["teacher"][0] > 0.9

    # A partly finished runner: one cell lost its record; only that cell runs again.
    os.remove(tmp_path / "table" / "dafl" / "seed_1" / "cell.json")
    finished = {path: os.path.getmtime(path) for path in tmp_path.glob("table/*/seed_*/cell.json")}
    capsys.readouterr()
    assert run_binary(reproduce, *args) == 0
    out = capsys.readouterr().out
    assert out.count("Skipping") == 10 and "Running dafl, seed 1" in out
    assert all(os.path.getmtime(path) == mtime for path, mtime in finished.items())
    assert (tmp_path / "table" / "dafl" / "seed_1" / "cell.json").exists()


def test_loss_study_plots_every_discrepancy(tmp_path, digits_teacher):
    assert run_binary(reproduce, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", "--seeds=1", *TINY,
                      "--study=loss", "--epochs=1") == 0
    assert {row["method"] for row in csv.DictReader(open(tmp_path / "loss.csv"))} == {"mae", "mse", "kld", "mse+mae"}
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fixed_generator_study_reuses_the_dfad_run_and_freezes_its_generator(tmp_path, digits_teacher):
    assert run_binary(reproduce, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", "--seeds=1", *TINY,
                      "--study=fixed_generator", "--epochs=1") == 0
    dfad_generator = keras.saving.load_model(tmp_path / "table" / "dfad" / "seed_0" / "generator.keras")
    fixed_generator = keras.saving.load_model(tmp_path / "fixed_generator" / "fixed_generator" / "seed_0" /
                                              "generator.keras")
    for a, b in zip(dfad_generator.weights, fixed_generator.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    run_dir = tmp_path / "fixed_generator" / "fixed_generator" / "seed_0"
    history = list(csv.DictReader(open(run_dir / "history.csv")))
    assert "loss_S" in history[0] and "loss_G" not in history[0]  # no generation stage
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"  # drawn without it


@pytest.mark.parametrize("args, flag", [
    (["--methods=dfad,gan"], "methods"),
    (["--seeds=0"], "seeds"),
    (["--study=speed"], "study"),
    (["--batch_sizes=64,0"], "batch_sizes"),
    (["--generator_loss_weights=adversarial=1,color=2"], "generator_loss_weights"),
])
def test_bad_flag_values_name_the_flag(tmp_path, args, flag):
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag}"):
        run_binary(reproduce, f"--model_dir={tmp_path}", *args)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag, message", [
    ("--dataset=cifar10", "--data_dir: --dataset=cifar10: cannot load split 'test'"),
    ("--methods=dfad_bn", "--generator_loss_weights: the batchnorm terms need a teacher with BatchNormalization"),
    ("--related_data=svhn", "--related_data: unknown data 'svhn'"),
])
def test_bad_input_is_one_line(tmp_path, digits_teacher, capsys, monkeypatch, flag, message):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "load", offline)
    methods = ["--methods=kd_rel"] if flag.startswith("--related") else []
    code = run_binary(reproduce, f"--model_dir={tmp_path / 'out'}", f"--teacher={digits_teacher}", *TINY, *methods,
                      flag)
    assert code != 0
    assert message in one_line_error(capsys)


def test_a_teacher_with_its_own_input_convention_is_fed_accordingly(tmp_path, digits_teacher):
    """A teacher taking [0, 255] pixels: with --teacher_input=byte it is measured on such images."""
    inner = keras.saving.load_model(digits_teacher)
    inputs = keras.Input((32, 32, 1))
    to_normalized = keras.layers.Rescaling(1 / (255 * 0.3081), offset=-0.1307 / 0.3081)
    byte_teacher = keras.Model(inputs, inner(to_normalized(inputs)))
    byte_teacher.save(tmp_path / "byte_teacher.keras")
    args = [f"--teacher={tmp_path / 'byte_teacher.keras'}", "--seeds=1", *TINY, "--methods=teacher"]
    assert run_binary(reproduce, f"--model_dir={tmp_path / 'right'}", "--teacher_input=byte", *args) == 0
    assert run_binary(reproduce, f"--model_dir={tmp_path / 'wrong'}", *args) == 0
    right = {row["method"]: float(row["best_accuracy"]) for row in csv.DictReader(open(tmp_path / "right/table.csv"))}
    wrong = {row["method"]: float(row["best_accuracy"]) for row in csv.DictReader(open(tmp_path / "wrong/table.csv"))}
    assert right["teacher"] > 0.9 and wrong["teacher"] < right["teacher"] - 0.1


def test_each_method_runs_its_own_recipe_whatever_the_base_recipe(tmp_path, digits_teacher):
    assert run_binary(reproduce, f"--model_dir={tmp_path}", f"--teacher={digits_teacher}", "--seeds=1", *TINY,
                      "--epochs=1", "--methods=dfad,robust", "--recipe=paper") == 0
    recipes = {method: json.loads((tmp_path / "table" / method / "seed_0" / "run_config.json").read_text())["objective"]
               for method in ("dfad", "robust")}
    assert recipes["dfad"]["recipe"] == "paper" and recipes["dfad"]["standardize_logits"] is False
    assert recipes["robust"]["recipe"] == "robust" and recipes["robust"]["standardize_logits"] is True
