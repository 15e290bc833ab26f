"""The README's Python API script runs as written: NoNN from Python with its own teacher and DataLoaders."""

import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def _script() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_script_trains_exports_and_needs_no_registered_dataset(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_script())
    assert "load_dataset" not in script.read_text() and "nonn.cli" not in script.read_text()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = re.search(r"teacher (\d\.\d+), NoNN of 2 students (\d\.\d+) on (\d+) test images", proc.stdout)
    assert printed, proc.stdout[-2000:]
    teacher, student, images = float(printed[1]), float(printed[2]), int(printed[3])
    assert images == 297 and teacher > 0.8 and student > 0.8  # ten classes: chance is 0.1
    manifest = json.loads((tmp_path / "digits-onnx" / "manifest.json").read_text())
    assert len(manifest["students"]) == 2 and manifest["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["input"]["shape"] == [1, 8, 8] and not (tmp_path / "runs").exists()
