"""Rewrite a re-exported bundle with the training provenance of the bundle it came from.

``edgesent export`` on a recovered student (see ``recover_student.py``) records only the
student folder and its own command; the data, licences, teacher and distillation that
made the student are in the original bundle's manifest. This copies them (paths
redacted) and rewrites the bundle through ``write_bundle`` (the graph,
tokenizer, labels, encoding, temperature and metrics stay exactly as exported).

    python examples/default_model/carry_provenance.py runs/v1-bundle \\
        runs/v1.1/edgesent-reviews-en edgesent/models/edgesent-reviews-en
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from edgesent.bundle import load_bundle, write_bundle
from edgesent_export.provenance import model_label, redacted_command


def carry(source: Path, exported: Path, out: Path) -> Path:
    original = json.loads((source / "edgesent.json").read_text(encoding="utf-8"))
    bundle = load_bundle(exported)
    manifest = bundle.manifest
    provenance = dict(manifest.provenance)
    before = original["provenance"]
    provenance.update({k: v for k, v in before.items()
                       if k in ("teacher", "student", "data", "vocabulary", "licences")})
    provenance["base_model"] = model_label(before["base_model"])  # a package, not a path
    provenance["student_source"] = {
        "bundle": f"{original['name']} (format {original['format_version']}, "
                  f"model.onnx sha256 {original['files']['model.onnx']['sha256']})",
        "command": redacted_command(shlex.split(before["command"])[1:]),
    }
    write_bundle(out, model_file=bundle.model_path, tokenizer_file=bundle.tokenizer_path,
                 labels=manifest.labels, encoding=manifest.encoding,
                 temperature=manifest.temperature, name=manifest.name,
                 precision=manifest.model["precision"],
                 quantization=manifest.model.get("quantization"), provenance=provenance,
                 metrics=manifest.metrics, overwrite=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the bundle the student was recovered from")
    parser.add_argument("exported", type=Path, help="the bundle edgesent export wrote")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(carry(args.source, args.exported, args.out))


if __name__ == "__main__":
    main()
