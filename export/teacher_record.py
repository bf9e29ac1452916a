"""A teacher's identity, and its record: what distillation needs of a fine-tuned teacher
once its weights are gone.

A big teacher (MPNet-base: 438 MB) cannot travel in a repository, nor outlive the machine
of a session; its logits over one build's texts (about 1 MB) can. :func:`write_record`
(``edgesent record-teacher``) lays out a teacher run without weights: ``result.json`` and
``history.json`` beside ``best/``, which holds the teacher's ``config.json``, its logits
and ``teacher_record.json`` (the identity of the weights the logits came from, and the
fingerprint of the texts, source and encoding they cover). Distilling from ``best/``
then reads those logits as if the teacher were there, and refuses texts or settings it
has none for.

A record's logits also spare most of the work of reading the same texts longer: a text
that fits the record's reading length reads the same at any longer one, so
:func:`reusable_logits` gives the rows a longer reading can take from the record, and
only the texts the record's length cut go through the teacher again (which must be the
record's own weights: retrained by the same command and seed, its identity checks that).

>>> write_record("runs/v2/teacher", "runs/v2/student/teacher_logits.npy",
...              "teachers/mpnet-v2")  # doctest: +SKIP
PosixPath('teachers/mpnet-v2/best')
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import InputError
from edgesent.tokenization import EncodingSettings, TextEncoder

RECORD_FILE = "teacher_record.json"
LOGITS_FILE = "teacher_logits.npy"
# What a teacher identity hashes besides its weights.
IDENTITY_FILES = ("config.json", "tokenizer.json", "vocab.txt")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# What a record keeps of the teacher run around ``best/`` (when the run has them).
RUN_FILES = ("result.json", "history.json", "curves.png")


def has_weights(model_dir: str | Path) -> bool:
    root = Path(model_dir)
    return root.is_dir() and any(p.suffix in WEIGHT_SUFFIXES for p in root.iterdir())


def is_record(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is a teacher record: a record file and no weights."""
    return (Path(model_dir) / RECORD_FILE).is_file() and not has_weights(model_dir)


def read_record(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable teacher record ({exc})") from None
    if not isinstance(record, dict) or not {"teacher", "fingerprint"} <= record.keys():
        raise InputError(f"{path}: not a teacher record (it needs 'teacher' and "
                         "'fingerprint')")
    return record


def teacher_identity(teacher: str | Path) -> str:
    """A digest of a teacher directory's config, tokenizer and weights (the one its
    record names, for a record): cached logits of another teacher, a retrained one in
    the same place, must not be reused. A hub id is its own identity."""
    root = Path(teacher)
    if not root.is_dir():
        return str(teacher)
    if is_record(root):
        return str(read_record(root)["teacher"])
    digest = hashlib.sha256()
    for path in sorted(root.iterdir()):
        if path.name in IDENTITY_FILES or path.suffix in WEIGHT_SUFFIXES:
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def logits_fingerprint(texts: Sequence[str], identity: str, source: str,
                       encoding: EncodingSettings) -> str:
    """What cached teacher logits are keyed to: the texts, in order, the teacher's
    identity, where the logits came from and how the teacher read the texts."""
    digest = hashlib.sha256(f"{identity}|{source}|{json.dumps(asdict(encoding))}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def record_encoding(record_dir: str | Path) -> EncodingSettings:
    """How the teacher read the texts of a record's logits: the record's ``encoding``,
    or (records written before it was kept) the teacher run's, in ``result.json``."""
    root = Path(record_dir)
    encoding = read_record(root).get("encoding")
    result = root.parent / "result.json"
    if encoding is None and result.is_file():
        encoding = json.loads(result.read_text("utf-8")).get("encoding")
    if not isinstance(encoding, dict):
        raise InputError(f"{root}: the record does not say how its teacher read the texts")
    try:
        return EncodingSettings(**encoding)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{root}: unreadable encoding in the record ({exc})") from None


def reusable_logits(record_dir: str | Path, texts: Sequence[str], identity: str, source: str,
                    encoder: TextEncoder) -> tuple[np.ndarray, list[int]]:
    """The record's logits over ``texts`` and the indices of the texts it cannot give at
    ``encoder``'s longer reading length (those its own length cut), which the teacher
    must read again. The record must hold this teacher's (``identity``) logits from
    ``source`` over these very texts, at a reading that differs in length alone."""
    root = Path(record_dir)
    if not is_record(root):
        raise InputError(f"{root}: not a teacher record (no {RECORD_FILE}, or weights there)")
    record = read_record(root)
    if record["teacher"] != identity:
        raise InputError(f"{root}: its logits came from another teacher than this one "
                         "(retrain it with the record's command and seed, on the same kind "
                         "of machine, to get the same weights)")
    short, longer = record_encoding(root), encoder.settings
    if replace(short, max_length=longer.max_length) != longer or \
            short.max_length >= longer.max_length:
        raise InputError(f"{root}: its logits read {asdict(short)}; they are reused only "
                         f"under a longer reading that differs in length alone, not "
                         f"{asdict(longer)}")
    if logits_fingerprint(texts, identity, source, short) != record["fingerprint"]:
        raise InputError(f"{root}: its logits cover other texts or another source than "
                         f"these ({record.get('texts', '?')} texts; made with: "
                         f"{record.get('made_with') or 'see its result.json'})")
    cut = [i for i, ids in enumerate(encoder.token_ids(texts)) if len(ids) > short.max_length]
    return np.load(root / LOGITS_FILE, allow_pickle=False), cut


def recorded_logits(teacher: str | Path, fingerprint: str) -> np.ndarray | None:
    """The logits a teacher record holds for ``fingerprint`` (texts, teacher, source and
    encoding, as :func:`edgesent_export.distill.teacher_logits` hashes them); None when
    ``teacher`` is not a record. A record without logits for them is an input error:
    there are no weights to compute them with."""
    if not is_record(teacher):
        return None
    record = read_record(teacher)
    if record["fingerprint"] != fingerprint:
        made_with = record.get("made_with") or "see its result.json"
        raise InputError(
            f"{teacher}: this teacher record holds logits for other texts or settings "
            f"({record.get('texts', '?')} texts; made with: {made_with}) and no weights to "
            "compute new ones: distil on the data and settings it was made with, or from "
            "the teacher itself")
    return np.load(Path(teacher) / LOGITS_FILE, allow_pickle=False)


def write_record(teacher_run: str | Path, logits: str | Path, dest: str | Path,
                 made_with: str | None = None) -> Path:
    """Write the record of the teacher run ``teacher_run`` (its ``best/`` and reports)
    with the cached ``logits`` (a ``teacher_logits.npy`` written by distillation, with
    its ``.json`` beside it) into ``dest``, which must not exist yet; returns
    ``dest/best``, the directory to distil from. ``made_with`` (the command whose texts
    the logits cover) is kept for the error a mismatch gets."""
    run, logits, dest = Path(teacher_run), Path(logits), Path(dest)
    best = run / "best"
    if not has_weights(best):
        raise InputError(f"{best}: no teacher weights here (expected a finished teacher "
                         "run, with best/ and result.json)")
    meta = logits.with_suffix(".json")
    if not logits.is_file() or not meta.is_file():
        raise InputError(f"{logits}: no cached teacher logits (with {meta.name} beside "
                         "them) here")
    cached = json.loads(meta.read_text("utf-8"))
    identity = teacher_identity(best)
    if cached.get("teacher", identity) != identity:
        raise InputError(f"{logits}: these logits came from another teacher than {best}")
    if dest.exists():
        raise InputError(f"{dest}: already exists; a record is written into a new directory")
    values = np.load(logits, allow_pickle=False)
    (dest / "best").mkdir(parents=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    shutil.copy2(best / "config.json", dest / "best" / "config.json")
    np.save(dest / "best" / LOGITS_FILE, values, allow_pickle=False)
    record = {
        "teacher": identity,
        "fingerprint": cached["fingerprint"],
        "texts": int(values.shape[0]),
        "source": cached.get("source"),
        "encoding": cached.get("encoding"),
        "made_with": made_with,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (dest / "best" / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return dest / "best"
