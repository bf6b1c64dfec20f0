"""README's Python API block runs as printed."""

import ast
import json
import os
import re


def test_the_readme_python_api_block_runs_as_printed(tmp_path, monkeypatch, capsys):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    block = re.search(r"<!-- tests/test_readme.py runs this block as printed -->\n```python\n(.*?)```", readme,
                      re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    run_dir = tmp_path / "runs" / "api_demo"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert printed[-2] == f"{metrics['student_accuracy']} {os.path.join('runs', 'api_demo', 'student.keras')}"
    evaluated = ast.literal_eval(printed[-1])
    assert evaluated["accuracy"] == metrics["student_accuracy"] and evaluated["examples"] == 540
    assert metrics["this_run"]["total_iterations"] == 10 and metrics["teacher_accuracy"] > 0.3
    assert json.loads((run_dir / "run_config.json").read_text())["schedule"]["imitation_steps"] == 2
