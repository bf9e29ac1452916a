"""Cold start: wall time from launching a fresh process to its first printed prediction.

edgesent is measured through its own command, ``edgesent predict TEXT --model BUNDLE``;
every other system through the few lines a user would write (written out under the work
directory, so they can be read and rerun). The same scripts, run once more with
``BENCH_MODULES_OUT`` set, list the modules each system imports, from which the installed
environment it needs is sized.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.config import COLD_START_TEXT
from benchmarks.pool import PACKAGE_ROOT
from benchmarks.systems import SystemSpec

logger = logging.getLogger(__name__)

FOOTER = """
if _os.environ.get("BENCH_MODULES_OUT"):
    with open(_os.environ["BENCH_MODULES_OUT"], "w", encoding="utf-8") as _out:
        _out.write(_json.dumps(sorted(_sys.modules)))
"""

BODIES = {
    "edgesent": """
from edgesent.cli import main

main(["predict", sys.argv[1], "--model", MODEL], standalone_mode=False)
""",
    "onnx": """
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgesent.tokenization import EncodingSettings, TextEncoder

session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
encoder = TextEncoder(Tokenizer.from_file(TOKENIZER), EncodingSettings(**ENCODING))
ids, mask = encoder.encode([sys.argv[1]])
feed = {"input_ids": ids, "attention_mask": mask}
if any(i.name == "token_type_ids" for i in session.get_inputs()):
    feed["token_type_ids"] = np.zeros_like(ids)
logits = session.run(["logits"], feed)[0]
print(LABELS[int(logits[0].argmax())], flush=True)
""",
    "pipeline": """
from transformers import pipeline

classify = pipeline("text-classification", model=MODEL)
print(classify(sys.argv[1], truncation=True, max_length=MAX_LENGTH)[0]["label"], flush=True)
""",
    "optimum": """
from optimum.onnxruntime import ORTModelForSequenceClassification, pipeline
from transformers import AutoTokenizer

model = ORTModelForSequenceClassification.from_pretrained(MODEL)
tokenizer = AutoTokenizer.from_pretrained(MODEL)
classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
print(classify(sys.argv[1], truncation=True, max_length=MAX_LENGTH)[0]["label"], flush=True)
""",
    "tfidf": """
from pathlib import Path

from benchmarks.baselines import load_tfidf

print(load_tfidf(Path(MODEL)).predict([sys.argv[1]])[0], flush=True)
""",
    "vader": """
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

compound = SentimentIntensityAnalyzer().polarity_scores(sys.argv[1])["compound"]
print("positive" if compound >= 0 else "negative", flush=True)
""",
}


def write_script(spec: SystemSpec, out_dir: Path) -> Path:
    """The cold-start script of ``spec`` (constants first, then the user's lines)."""
    header = [
        f'"""Cold start of {spec.name}: classify the review given as argument."""',
        "import json as _json",
        "import os as _os",
        "import sys",
        "import sys as _sys",
        "",
        f"MODEL = {spec.model!r}",
        f"TOKENIZER = {spec.tokenizer!r}",
        f"ENCODING = {spec.encoding!r}",
        f"LABELS = {spec.labels!r}",
        f"MAX_LENGTH = {spec.max_length!r}",
    ]
    body = BODIES[spec.kind]
    path = out_dir / f"coldstart_{spec.name}.py"
    path.write_text("\n".join(header) + "\n" + body + FOOTER, "utf-8")
    return path


def edgesent_command(bundle: str) -> list[str]:
    """``edgesent predict TEXT --model BUNDLE`` with the console script of this Python."""
    script = Path(sys.executable).parent / "edgesent"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "edgesent.cli"]
    return [*launcher, "predict", COLD_START_TEXT, "--model", bundle]


def command(spec: SystemSpec, script: Path) -> list[str]:
    if spec.kind == "edgesent":
        return edgesent_command(str(spec.model))
    return [sys.executable, str(script), COLD_START_TEXT]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (
        ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.update(extra or {})
    return env


def time_first_line(cmd: list[str], env: dict[str, str] | None = None,
                    timeout: float = 300.0) -> tuple[float, str]:
    """Seconds from launch to the first line on stdout, and that line."""
    env = env or _env()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=PACKAGE_ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0 or not line.strip():
        tail = " | ".join(err.strip().splitlines()[-3:])
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} ({tail or 'no output'})")
    return elapsed, line.strip()


def measure_cold_starts(specs: list[SystemSpec], script_dir: Path, runs: int, warmup: int
                        ) -> dict[str, dict[str, Any]]:
    """Median and min cold start per system; runs interleaved across systems, the first
    ``warmup`` runs (page cache) discarded."""
    script_dir.mkdir(parents=True, exist_ok=True)
    for stale in script_dir.glob("modules_*.json"):
        stale.unlink()
    commands = {s.name: command(s, write_script(s, script_dir)) for s in specs}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    outputs: dict[str, str] = {}
    errors: dict[str, str] = {}
    for run in range(warmup + runs):
        names = list(commands)
        names = names[run % len(names):] + names[:run % len(names)]
        for name in names:
            if name in errors:
                continue
            # The scripts list their modules after printing, when the clock has stopped.
            env = _env({"BENCH_MODULES_OUT": str(script_dir / f"modules_{name}.json")})
            try:
                seconds, line = time_first_line(commands[name], env)
            except (RuntimeError, OSError) as exc:
                errors[name] = str(exc)
                logger.error("cold start of %s failed: %s", name, exc)
                continue
            outputs[name] = line[:200]
            if run >= warmup:
                samples[name].append(seconds)
        logger.info("cold-start run %d/%d done", run + 1, warmup + runs)
    out: dict[str, dict[str, Any]] = {}
    for name, cmd in commands.items():
        times = samples[name]
        out[name] = {"command": cmd, "runs": len(times), "first_output": outputs.get(name),
                     "median_s": statistics.median(times) if times else None,
                     "min_s": min(times) if times else None, "error": errors.get(name)}
    return out


@lru_cache(maxsize=1)
def startup_modules() -> frozenset[str]:
    """Modules every interpreter of this environment loads before running a script
    (site hooks such as setuptools' ``_distutils_hack``)."""
    code = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), check=True, timeout=120)
    return frozenset(json.loads(done.stdout))


def imported_modules(spec: SystemSpec, script_dir: Path) -> list[str]:
    """Modules loaded by the system's cold-start script after one prediction (listed by
    the cold-start runs; run once here when they did not, as for the edgesent command)."""
    listing = script_dir / f"modules_{spec.name}.json"
    if listing.is_file():
        return sorted(set(json.loads(listing.read_text("utf-8"))) - startup_modules())
    script = script_dir / f"coldstart_{spec.name}.py"
    if not script.exists():
        write_script(spec, script_dir)
    subprocess.run([sys.executable, str(script), COLD_START_TEXT], check=True, cwd=PACKAGE_ROOT,
                   env=_env({"BENCH_MODULES_OUT": str(listing)}), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    return sorted(set(json.loads(listing.read_text("utf-8"))) - startup_modules())
