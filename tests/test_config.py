"""The frozen run configuration: its JSON round trip, nested replacement and the flags that build it."""

import dataclasses
import json

import pytest
from absl import flags
from absl.testing import flagsaver

from dfad_tf import config
from dfad_tf.cli import distill_flags

FLAGS = flags.FLAGS


def test_a_config_survives_its_json_round_trip(tmp_path):
    cfg = config.DistillConfig(
        model_dir=str(tmp_path), teacher=config.TeacherSource(input="mean_std", input_mean=(0.5,), input_std=(0.2,)),
        schedule=config.ScheduleConfig(lr_decay_epochs=(10, 20), image_size=(64, 48)),
        objective=config.ObjectiveConfig(generator_loss_weights={"adversarial": 1.0, "batchnorm": 0.5}),
        export=config.ExportConfig(formats=("int8",)))
    config.save(cfg, tmp_path)
    assert config.load(tmp_path) == cfg
    assert config.load(tmp_path / "elsewhere") is None


def test_a_run_recorded_before_a_recipe_part_existed_keeps_what_it_ran(tmp_path):
    config.save(config.DistillConfig(model_dir=str(tmp_path), objective=config.ObjectiveConfig(clip_pixels=True)),
                tmp_path)
    recorded = json.loads((tmp_path / config.RUN_CONFIG).read_text())
    for part in ("generate_pixels", "student_training_in_generator_step"):
        del recorded["objective"][part]
    (tmp_path / config.RUN_CONFIG).write_text(json.dumps(recorded))
    objective = config.load(tmp_path).objective
    assert objective.generate_pixels is False and objective.student_training_in_generator_step is True
    assert objective.clip_pixels is True and objective.replay_memory is None  # recorded parts as recorded


def test_an_unknown_recorded_field_is_named():
    with pytest.raises(config.ConfigError, match=r"^schedule\.epoch: unknown field of ScheduleConfig"):
        config.from_dict(config.DistillConfig, {"model_dir": "x", "schedule": {"epoch": 3}})


def test_replace_sets_a_nested_field_and_leaves_the_original():
    cfg = config.DistillConfig(model_dir="x")
    changed = config.replace(cfg, "teacher.training.epochs", 3)
    assert changed.teacher.training.epochs == 3 and cfg.teacher.training.epochs == 30
    assert changed == dataclasses.replace(cfg, teacher=dataclasses.replace(
        cfg.teacher, training=dataclasses.replace(cfg.teacher.training, epochs=3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1


def test_the_distill_flags_build_the_config(tmp_path):  # a flag naming no field would raise here
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["prog", f"--model_dir={tmp_path}", "--output_stride=8", "--lr_decay_epochs=5,7",
               "--generator_loss_weights=adversarial=1,smoothness=0.5", "--teacher_input_mean=0.4",
               "--export=int8", "--image_size=40,30", "--replay_memory=64", "--clip_pixels",
               "--nogenerate_pixels"])
        cfg = distill_flags.distill_config()
    assert cfg.student.output_stride == cfg.teacher.training.output_stride == 8
    assert cfg.schedule.lr_decay_epochs == (5, 7) and cfg.schedule.image_size == (40, 30)
    assert cfg.objective.generator_loss_weights["smoothness"] == 0.5 and cfg.objective.replay_memory == 64
    assert cfg.objective.clip_pixels and cfg.teacher.input_mean == (0.4,) and cfg.export.formats == ("int8",)
    assert cfg.objective.generate_pixels is False and cfg.objective.student_training_in_generator_step is None
