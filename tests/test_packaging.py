"""A wheel of the repository ships every flagfile; installed by pip in a fresh venv, it runs digits by name."""

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# digits.cfg (and the teacher_digits.cfg it includes) made tiny; the rest of both files stays as shipped.
TINY_DIGITS = ["--teacher_epochs=1", "--epochs=1", "--iterations_per_epoch=2", "--batch_size=16", "--latent_dim=16",
               "--imitation_steps=2", "--export=float32"]


def test_a_wheel_installed_in_a_fresh_venv_runs_digits_by_name(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], cwd=source, check=True, capture_output=True)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "dfad_tf-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"dfad_tf/configs/{os.path.basename(path)}" for path in glob.glob(f"{ROOT}/flags/*.cfg")} <= shipped
    shutil.rmtree(source)  # nothing of the checkout is left to import by accident
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    # The venv sees this interpreter's packages (tensorflow and the rest) as a path only: the .pth files there,
    # e.g. an editable install of the checkout, are not run.
    (venv_site,) = glob.glob(str(venv / "lib" / "python*" / "site-packages"))
    with open(os.path.join(venv_site, "dependencies.pth"), "w") as file:
        file.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "-q", wheel], check=True, capture_output=True)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    work = tmp_path / "elsewhere"  # not the checkout: the configuration is found by name in the installed package
    work.mkdir()
    located = subprocess.run([venv / "bin" / "python", "-c", "import dfad_tf; print(dfad_tf.__file__)"], cwd=work,
                             env=env, capture_output=True, text=True, check=True)
    assert located.stdout.strip().startswith(venv_site)
    result = subprocess.run([venv / "bin" / "dfad-distill", "--config=digits", "--model_dir=run", *TINY_DIGITS],
                            cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    config = metrics["config"]
    # From digits.cfg and, through it, teacher_digits.cfg; the overrides on top.
    assert (config["student"]["model"], config["generator"]["width"], config["schedule"]["lr_decay_epochs"]) == (
        "lenet5_half", 16, [25])
    assert (config["teacher"]["training"]["model"], config["teacher"]["training"]["label_smoothing"]) == ("lenet5", 0.1)
    assert (config["schedule"]["epochs"], config["teacher"]["training"]["epochs"]) == (1, 1)
    assert metrics["student_tflite_accuracy"] == metrics["student_accuracy"]
    assert os.path.exists(work / "run" / "teacher.keras") and os.path.exists(work / "run" / "student.tflite")
