import os

import pytest

from dfad_tf import fileio


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]
    with fileio.atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_atomic_directory_keeps_the_old_directory_on_failure(tmp_path):
    target = tmp_path / "savedmodel"
    target.mkdir()
    (target / "saved_model.pb").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_directory(target) as tmp:
            os.makedirs(tmp)
            raise RuntimeError("conversion failed")
    assert (target / "saved_model.pb").read_text() == "old"
    with fileio.atomic_directory(target) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write("new")
    assert (target / "saved_model.pb").read_text() == "new"
    assert os.listdir(tmp_path) == ["savedmodel"]


def test_json_round_trip(tmp_path):
    path = tmp_path / "metrics.json"
    assert fileio.read_json(path, default={}) == {}
    fileio.write_json(path, {"student_accuracy": 0.9})
    assert fileio.read_json(path) == {"student_accuracy": 0.9}
