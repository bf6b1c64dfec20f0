"""A wheel built from the repository ships the named configurations, and a copy installed from it runs one."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_ships_every_flagfile_and_an_installed_copy_reads_digits_by_name(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], cwd=source, check=True, capture_output=True)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "dfad_tf-*.whl"))
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    assert {f"dfad_tf/configs/{os.path.basename(path)}" for path in glob.glob(f"{ROOT}/flags/*.cfg")} <= names
    program = ("from absl import flags\nfrom dfad_tf.cli import common, distill_flags\n"
               "flags.FLAGS(common.expand_flagfiles(['prog', '--config=digits']))\n"
               "print(common.config_path('digits'), flags.FLAGS.generator_width, flags.FLAGS.teacher_label_smoothing)")
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(installed)}, timeout=120)
    assert result.stdout.split() == [str(installed / "dfad_tf" / "configs" / "digits.cfg"), "16", "0.1"], result.stderr
