"""Every Python block of README.md runs as printed; the Python API block also does what it says."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
API_MARK = "<!-- tests/test_readme.py runs this block as printed -->\n"
API_BLOCK = re.search(re.escape(API_MARK) + r"```python\n(.*?)```", README.read_text(), re.S).group(1)
# The Python API block runs once, in its own test below, which also checks what it prints.
BLOCKS = [block for block in re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
          if block != API_BLOCK]


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3  # the API block is not among them


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs_as_printed(block, tmp_path):
    (tmp_path / "block.py").write_text(block)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(README.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_readme_python_api_block_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(API_BLOCK, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    run_dir = tmp_path / "runs" / "api_demo"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert printed[-2] == f"{metrics['student_accuracy']} {os.path.join('runs', 'api_demo', 'student.keras')}"
    evaluated = ast.literal_eval(printed[-1])
    assert evaluated["accuracy"] == metrics["student_accuracy"] and evaluated["examples"] == 540
    assert metrics["this_run"]["total_iterations"] == 10 and metrics["teacher_accuracy"] > 0.3
    assert json.loads((run_dir / "run_config.json").read_text())["schedule"]["imitation_steps"] == 2
