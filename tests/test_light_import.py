"""The run half never imports the build half's heavy dependencies, not even indirectly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "optimum")
SERVE_ONLY = ("fastapi", "uvicorn", "starlette")

PROBE = """
import json, sys
import edgesent, edgesent.bundle, edgesent.classifier, edgesent.inputs, edgesent.output
import edgesent.cli
from edgesent.cli import main
try:  # what `edgesent --help` does, with the optional commands attached
    main(["--help"], standalone_mode=True)
except SystemExit as exit:
    code = exit.code
roots = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "modules": roots, "commands": sorted(main.commands)}))
"""


def run_probe() -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_run_half_imports_nothing_heavy() -> None:
    probe = run_probe()
    assert probe["code"] == 0
    assert not set(HEAVY) & set(probe["modules"]), probe["modules"]
    assert not set(SERVE_ONLY) & set(probe["modules"]), "serve deps must load lazily"
    assert {"predict", "info"} <= set(probe["commands"])
    assert "onnxruntime" in probe["modules"] and "tokenizers" in probe["modules"]
