"""examples/train_loader.py runs as written and maps its annotation inside the image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_loader.py"


def test_example_runs_two_epochs_and_maps_the_box():
    process = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr
    out = process.stdout
    assert re.findall(r"epoch (\d): 8 images", out) == ["0", "1"]
    orders = re.findall(r"order starts (\[.*\])", out)
    assert len(orders) == 2 and orders[0] != orders[1]
    box = re.search(r"output box \(([\d.]+), ([\d.]+), ([\d.]+), ([\d.]+)\) in a 256x320", out)
    assert box is not None, out
    x0, y0, x1, y1 = (float(v) for v in box.groups())
    assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 320
    assert "clipped=False" in out
