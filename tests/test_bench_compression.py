"""``python -m bench.compression --quick`` runs end to end and prints its table.

It asserts nothing about speed (benchmarks measure, tests don't), only that both
variants were measured and that compression did shrink the bytes received.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_compression_bench_runs(tmp_path: Path) -> None:
    out = tmp_path / "compression.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compression", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "bytes down per ask" in done.stdout and "asks/s" in done.stdout
    result = json.loads(out.read_text())
    off, on = result["no compression"], result["compression"]
    assert on["down"] < off["down"]  # deflate was negotiated and used
    assert off["asks_per_s"] > 0 and on["asks_per_s"] > 0
