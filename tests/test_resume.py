"""A run killed with SIGKILL in the middle of an epoch, rerun with the same command, ends as if never killed."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from dfad_tf import evaluation
from dfad_tf.cli import distill

from conftest import TINY, run_binary

EPOCHS = 3
# With a replay memory and averages of the student's and the generator's weights: state a resumed run must restore.
FLAGS = [*TINY, f"--epochs={EPOCHS}", "--iterations_per_epoch=8", "--export=float32", "--replay_memory=64",
         "--generator_average=0.9", "--student_average=0.9"]


def history(model_dir):
    return np.genfromtxt(model_dir / "history.csv", delimiter=",", names=True)


def test_sigkill_mid_epoch_then_the_same_command_resumes_and_finishes_like_an_uninterrupted_run(
        tmp_path, digits_teacher, digits_arrays):
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_binary(distill, f"--model_dir={reference}", f"--teacher={digits_teacher}", *FLAGS) == 0

    command = [sys.executable, "-m", "dfad_tf.cli.distill", f"--model_dir={killed}", f"--teacher={digits_teacher}",
               *FLAGS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    backup = killed / "backup" / "state.weights.h5"
    deadline = time.time() + 240
    while not backup.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # The backup is written last at the end of epoch 1: the run is now inside epoch 2.
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr[-2000:]
    assert len(np.atleast_1d(history(killed))) == 1
    best_before = json.loads((killed / "student.json").read_text())
    # The generator of the best student is saved with it: a resumed run that never beats it can still export.
    assert os.path.exists(killed / "generator.keras")

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the interrupted run" in result.stdout
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["this_run"]["epochs_run"] == EPOCHS - 1
    assert metrics["this_run"]["total_iterations"] == EPOCHS * 8
    # The same noise, weights, optimizer states and schedule: epoch by epoch the same losses as never killed.
    resumed, uninterrupted = history(killed), history(reference)
    assert list(resumed["epoch"]) == list(range(EPOCHS))
    # The bank of the run's images and the student chosen on it came back with the backup.
    for column in ("loss_S", "loss_G", "val_accuracy", "val_loss_S", "run_agreement", "run_choice"):
        assert resumed[column] == pytest.approx(uninterrupted[column], rel=1e-5), column
    # The wall time of distillation goes on from the killed run's first epoch instead of restarting.
    assert resumed["seconds"][0] > 0 and np.all(np.diff(resumed["seconds"]) > 0)

    # The best student on disk is the best of all epochs, never one worse than that before the kill.
    best = json.loads((killed / "student.json").read_text())
    assert best["value"] >= best_before["value"]
    assert best["value"] == pytest.approx(max(resumed["val_accuracy"]))
    images, labels = digits_arrays
    on_disk = evaluation.model_accuracy(keras.saving.load_model(killed / "student.keras"), images, labels)
    assert on_disk == pytest.approx(best["value"])
    assert not os.path.exists(killed / "backup")
