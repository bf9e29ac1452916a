"""The model bundle: the one definition of its format, written and verified here.

A bundle is a directory::

    edgesent.json    manifest (format "edgesent-bundle", format_version 2)
    model.onnx       classifier graph: input_ids, attention_mask -> logits (batch, labels)
    tokenizer.json   the ``tokenizers`` tokenizer the model was trained with

The manifest lists every file with its sha256 and size; :func:`load_bundle` checks them,
so a truncated download or an edited file is caught before it gives wrong answers.
What decides an answer (``labels`` in logit order, ``temperature``, ``encoding``) is also
written into ``model.onnx``'s metadata (keys ``edgesent.labels`` and so on), which the
checksum covers: a manifest edited to disagree with its graph is refused. Format 1
bundles (no such metadata) still load; :attr:`Bundle.checks` says what was verified.
The build half writes bundles only through :func:`write_bundle`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import onnxruntime as ort
from tokenizers import Tokenizer

from edgesent.errors import BundleError
from edgesent.graph import OUTPUT_NAME, feed, output_width, signature_problems
from edgesent.tokenization import EncodingSettings, TextEncoder

logger = logging.getLogger(__name__)

FORMAT = "edgesent-bundle"
FORMAT_VERSION = 2
BOUND_KEYS = ("labels", "temperature", "encoding")  # stored in the graph's metadata too
METADATA_PREFIX = "edgesent."
MANIFEST_NAME = "edgesent.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
TASK = "text-classification"
_KEYS = ("format", "format_version", "name", "task", "labels", "encoding", "tokenizer",
         "temperature", "model", "files", "provenance", "metrics")
_SPECIAL_ROLES = {"pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"), "cls": ("[CLS]", "<s>"),
                  "sep": ("[SEP]", "</s>"), "mask": ("[MASK]", "<mask>")}


@dataclass(frozen=True, eq=True)
class Manifest(Mapping[str, Any]):
    """The parsed ``edgesent.json``; attributes, or read it like the JSON dict.

    >>> manifest["labels"], manifest.temperature  # doctest: +SKIP
    (['negative', 'positive'], 1.0)
    """

    name: str
    labels: tuple[str, ...]
    encoding: EncodingSettings
    tokenizer: dict[str, Any]
    model: dict[str, Any]
    files: dict[str, dict[str, Any]]
    temperature: float = 1.0
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    task: str = TASK

    def __getitem__(self, key: str) -> Any:
        if key not in _KEYS:
            raise KeyError(key)
        if key == "labels":
            return list(self.labels)
        if key == "encoding":
            enc = self.encoding
            return {"max_length": enc.max_length, "truncation": enc.truncation,
                    "head_tokens": enc.head_tokens}
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as the JSON object stored in ``edgesent.json``."""
        return {key: self[key] for key in _KEYS}


@dataclass(frozen=True)
class Bundle:
    """A model bundle on disk, described by its manifest.

    >>> bundle = load_bundle("models/edgesent-reviews-en")  # doctest: +SKIP
    >>> bundle.labels, bundle.encoding.max_length  # doctest: +SKIP
    (['negative', 'positive'], 256)
    """

    path: Path
    manifest: Manifest
    checks: tuple[str, ...] = ()  # what loading verified, for people (``edgesent info``)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def encoding(self) -> EncodingSettings:
        return self.manifest.encoding

    @property
    def temperature(self) -> float:
        return self.manifest.temperature

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model["file"]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest.tokenizer["file"]

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the manifest and every file it lists."""
        listed = sum(int(entry["size"]) for entry in self.manifest.files.values())
        return listed + (self.path / MANIFEST_NAME).stat().st_size


def load_bundle(path: str | os.PathLike[str], verify: bool = True) -> Bundle:
    """Read a bundle and, with ``verify``, check every file, checksum and the model graph.

    ``verify=False`` only parses and validates the manifest (no hashing, no model load).

    >>> bundle = load_bundle("models/edgesent-reviews-en")  # doctest: +SKIP
    """
    if not verify:
        return _read_manifest(Path(path))
    return open_bundle(path)[0]


def open_bundle(
    path: str | os.PathLike[str], *, session_options: ort.SessionOptions | None = None
) -> tuple[Bundle, ort.InferenceSession, Tokenizer]:
    """Verify a bundle fully and return it with its ONNX Runtime session and tokenizer.

    This is what :meth:`edgesent.Classifier.load` uses, so the model is loaded once.

    >>> bundle, session, tokenizer = open_bundle("models/edgesent-reviews-en")  # doctest: +SKIP
    """
    bundle = _read_manifest(Path(path))
    root, manifest = bundle.path, bundle.manifest
    for name, entry in manifest.files.items():
        target = root / name
        if not target.is_file():
            _fail(root, name, "file is missing (the manifest lists it)")
        size = target.stat().st_size
        if size != entry["size"]:
            _fail(root, name, f"size is {size} bytes but the manifest says {entry['size']}: "
                              "the file was truncated or replaced")
        if sha256_file(target) != entry["sha256"].lower():
            _fail(root, name, "sha256 does not match the manifest: the file was modified")
    model_name, tokenizer_name = manifest.model["file"], manifest.tokenizer["file"]
    tokenizer = _load_tokenizer(root, tokenizer_name, root / tokenizer_name)
    session, width = _open_session(root, model_name, root / model_name, session_options)
    if width is not None and width != len(manifest.labels):
        _fail(root, model_name, _width_problem(width, manifest.labels))
    checks = [f"format {manifest.format} v{manifest.format_version}",
              f"size and sha256 of {', '.join(sorted(manifest.files))}",
              f"graph {', '.join(i.name for i in session.get_inputs())} -> logits"
              + (f" ({width} per text)" if width is not None else "")]
    if manifest.format_version >= 2:
        _check_binding(root, manifest, session)
        checks.append(f"{', '.join(BOUND_KEYS)} match the graph's metadata")
    else:
        _probe(root, model_name, session, TextEncoder(tokenizer, manifest.encoding))
        checks.append(f"{', '.join(BOUND_KEYS)} NOT bound to the graph (format 1 bundle); "
                      f"max_length {manifest.encoding.max_length} runs")
    return Bundle(root, manifest, tuple(checks)), session, tokenizer


def write_bundle(
    out_dir: str | os.PathLike[str],
    *,
    model_file: str | os.PathLike[str],
    tokenizer_file: str | os.PathLike[str],
    labels: Sequence[str],
    encoding: EncodingSettings | Mapping[str, Any],
    temperature: float = 1.0,
    name: str | None = None,
    precision: str = "int8",
    quantization: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra_files: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
) -> Bundle:
    """Check a model and tokenizer, then write them as a bundle, atomically.

    Files are copied into a temporary directory beside ``out_dir``, the manifest is
    written last, and the directory is renamed into place. An existing non-empty
    ``out_dir`` is replaced only with ``overwrite=True``.

    >>> write_bundle("out/reviews", model_file="model.int8.onnx",
    ...              tokenizer_file="tokenizer.json", labels=["negative", "positive"],
    ...              encoding=EncodingSettings(max_length=256))  # doctest: +SKIP
    """
    out = Path(out_dir)
    if not isinstance(encoding, EncodingSettings):
        encoding = EncodingSettings(**dict(encoding))
    sources = {MODEL_FILE: Path(model_file), TOKENIZER_FILE: Path(tokenizer_file)}
    for extra in map(Path, extra_files):
        if extra.name in sources or extra.name == MANIFEST_NAME:
            _fail(out, extra.name, "an extra file may not reuse a bundle file name")
        sources[extra.name] = extra
    for file_name, src in sources.items():
        if not src.is_file():
            _fail(out, file_name, f"source file {src} does not exist")
    if out.exists() and not out.is_dir():
        raise BundleError(f"bundle {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"bundle {out}: already exists; pass overwrite=True to replace it")

    tokenizer = _load_tokenizer(out, TOKENIZER_FILE, sources[TOKENIZER_FILE])
    session, width = _open_session(out, MODEL_FILE, sources[MODEL_FILE], None)
    if width is None:  # dynamic output width: run the graph once to learn it
        ids, mask = TextEncoder(tokenizer, encoding).encode(["probe"])
        try:
            width = session.run([OUTPUT_NAME], feed(session, ids, mask))[0].shape[1]
        except Exception as exc:  # onnxruntime raises several private exception types
            _fail(out, MODEL_FILE, f"the graph fails on a probe text ({_first_line(exc)})")
    labels = tuple(labels)
    if width != len(labels):
        _fail(out, MODEL_FILE, _width_problem(width, labels))
    _probe(out, MODEL_FILE, session, TextEncoder(tokenizer, encoding))
    binding = _binding(labels, float(temperature), encoding)

    info: dict[str, Any] = dict(provenance or {})
    info["edgesent_version"] = _edgesent_version()
    info.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        files = {}
        for file_name, src in sources.items():
            shutil.copyfile(src, tmp / file_name)
            if file_name == MODEL_FILE:
                _bind(tmp / file_name, binding, session)
            files[file_name] = {"sha256": sha256_file(tmp / file_name),
                                "size": (tmp / file_name).stat().st_size}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": name or out.name,
            "task": TASK, "labels": list(labels),
            "encoding": {"max_length": encoding.max_length, "truncation": encoding.truncation,
                         "head_tokens": encoding.head_tokens},
            "tokenizer": _tokenizer_settings(sources[TOKENIZER_FILE], tokenizer),
            "temperature": float(temperature),
            "model": {"file": MODEL_FILE, "precision": precision,
                      "quantization": dict(quantization or {}),
                      "inputs": [i.name for i in session.get_inputs()],
                      "outputs": [OUTPUT_NAME]},
            "files": files, "provenance": info, "metrics": dict(metrics or {}),
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False, default=_json_default)
        written = _parse_manifest(out, json.loads(text))  # the checks a reader applies
        (tmp / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle = Bundle(out, written)
    logger.info("wrote bundle %s (%d bytes)", out, bundle.size_bytes)
    return bundle


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- internals ---------------------------------------------------------------------------


def _binding(labels: Sequence[str], temperature: float, encoding: EncodingSettings
             ) -> dict[str, str]:
    """The graph metadata that pins what decides an answer."""
    return {
        METADATA_PREFIX + "labels": json.dumps(list(labels)),
        METADATA_PREFIX + "temperature": repr(float(temperature)),
        METADATA_PREFIX + "encoding": json.dumps(
            {"max_length": encoding.max_length, "truncation": encoding.truncation,
             "head_tokens": encoding.head_tokens}, sort_keys=True),
    }


def _bind(model_path: Path, binding: Mapping[str, str], session: ort.InferenceSession) -> None:
    """Add ``binding`` to the ONNX model's ``metadata_props``, in place.

    ``ModelProto.metadata_props`` is protobuf field 14; protobuf readers merge fields
    appended to a message, so the entries are appended without the ``onnx`` package.
    A graph that already carries different ``edgesent.*`` values is rewritten with onnx.
    """
    existing = session.get_modelmeta().custom_metadata_map
    ours = {k: v for k, v in existing.items() if k.startswith(METADATA_PREFIX)}
    if ours == dict(binding):
        return
    if ours:
        import onnx  # the build half has it; rebinding a bound graph is a build-time job

        model = onnx.load(str(model_path))
        kept = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept}, **binding})
        onnx.save(model, str(model_path))
        return
    with open(model_path, "ab") as fh:
        for key, value in binding.items():
            entry = _proto_field(1, key.encode()) + _proto_field(2, value.encode())
            fh.write(_proto_field(14, entry))


def _proto_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _check_binding(root: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    expected = _binding(manifest.labels, manifest.temperature, manifest.encoding)
    for field_name in BOUND_KEYS:
        key = METADATA_PREFIX + field_name
        if key not in meta:
            _fail(root, manifest.model["file"],
                  f"graph metadata has no {key!r}: a format 2 bundle must bind "
                  f"{', '.join(BOUND_KEYS)} to its graph (rewrite it with write_bundle)")
        if meta[key] != expected[key]:
            _fail(root, MANIFEST_NAME,
                  f'"{field_name}" disagrees with the graph it describes (the graph was '
                  f"built for {meta[key]}, the manifest says {expected[key]}): "
                  "the manifest was edited; restore it or rebuild the bundle")


def _probe(root: Path, name: str, session: ort.InferenceSession, encoder: TextEncoder) -> None:
    """Run the graph once on a text of ``max_length`` tokens: a max_length beyond the
    graph's position table fails here, not on a user's first long review."""
    length = encoder.settings.max_length
    ids, mask = encoder.encode(["probe " * length])
    try:
        session.run([OUTPUT_NAME], feed(session, ids, mask))
    except Exception as exc:  # onnxruntime raises several private exception types
        _fail(root, name, f"the graph fails on an input of {ids.shape[1]} tokens, the "
                          f"encoding's max_length ({_first_line(exc)}); is max_length "
                          "beyond the model's position embeddings?")


def _fail(root: Path, file: str, problem: str) -> NoReturn:
    raise BundleError(f"bundle {root}: {file}: {problem}")


def _width_problem(width: int, labels: Sequence[str]) -> str:
    return (f"the model outputs {width} logits per text but the manifest lists "
            f"{len(labels)} labels ({', '.join(labels)})")


def _edgesent_version() -> str:
    from edgesent import __version__

    return __version__


def _read_manifest(root: Path) -> Bundle:
    if root.is_file() and root.name == MANIFEST_NAME:
        root = root.parent
    if not root.exists():
        raise BundleError(f"bundle {root}: no such directory")
    if not root.is_dir():
        raise BundleError(f"bundle {root}: not a directory (a bundle is a directory)")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        _fail(root, MANIFEST_NAME, "file is missing: this is not an edgesent bundle")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        _fail(root, MANIFEST_NAME, f"not UTF-8 text (byte {exc.start + 1})")
    except json.JSONDecodeError as exc:
        _fail(root, MANIFEST_NAME,
              f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    return Bundle(root, _parse_manifest(root, data))


def _parse_manifest(root: Path, data: Any) -> Manifest:
    def bad(problem: str) -> NoReturn:
        _fail(root, MANIFEST_NAME, problem)

    def need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in obj:
            bad(f'required key "{where}{key}" is missing')
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            bad(f'"{where}{key}" must be {names}, not {type(value).__name__}')
        return value

    if not isinstance(data, dict):
        bad(f"must hold a JSON object, not {type(data).__name__}")
    if "format" not in data:
        bad('required key "format" is missing: not an edgesent manifest')
    fmt = data["format"]
    if fmt != FORMAT:
        bad(f'unknown format {fmt!r} (expected "{FORMAT}")')
    version = need(data, "format_version", int, "")
    if version > FORMAT_VERSION:
        bad(f"format version {version} is newer than this edgesent {_edgesent_version()} "
            f"reads (up to {FORMAT_VERSION}): upgrade edgesent")
    if version < 1:
        bad(f"format_version must be at least 1, got {version}")
    task = need(data, "task", str, "")
    if task != TASK:
        bad(f'task {task!r} is not supported (expected "{TASK}")')
    labels = need(data, "labels", list, "")
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        bad('"labels" must list at least two non-empty strings')
    if len(set(labels)) != len(labels):
        bad(f'"labels" has duplicates: {labels}')
    enc = need(data, "encoding", dict, "")
    try:
        encoding = EncodingSettings(**enc)
    except (TypeError, ValueError) as exc:
        bad(f'"encoding" is invalid: {exc}')
    temperature = need(data, "temperature", (int, float), "")
    if not (math.isfinite(temperature) and temperature > 0):
        bad(f'"temperature" must be a positive number, got {temperature}')
    tokenizer = need(data, "tokenizer", dict, "")
    model = need(data, "model", dict, "")
    files = need(data, "files", dict, "")
    for file_name, entry in files.items():
        if Path(file_name).name != file_name or file_name in ("", ".", "..", MANIFEST_NAME):
            bad(f'"files" lists {file_name!r}, which is not a plain file name')
        if not isinstance(entry, dict):
            bad(f'"files.{file_name}" must be an object with sha256 and size')
        need(entry, "sha256", str, f"files.{file_name}.")
        need(entry, "size", int, f"files.{file_name}.")
    for section, obj in (("tokenizer", tokenizer), ("model", model)):
        file_name = need(obj, "file", str, f"{section}.")
        if file_name not in files:
            bad(f'"{section}.file" {file_name!r} is not listed in "files"')
    need(model, "precision", str, "model.")
    return Manifest(
        name=need(data, "name", str, ""), labels=tuple(labels), encoding=encoding,
        tokenizer=tokenizer, model=model, files=files, temperature=float(temperature),
        provenance=need(data, "provenance", dict, "") if "provenance" in data else {},
        metrics=need(data, "metrics", dict, "") if "metrics" in data else {},
        format=fmt, format_version=version, task=task,
    )


def _load_tokenizer(root: Path, name: str, path: Path) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
        TextEncoder(tokenizer, EncodingSettings())  # finds the special-token frame
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        _fail(root, name, f"not a usable tokenizers file ({_first_line(exc)})")
    return tokenizer


def _open_session(root: Path, name: str, path: Path, options: ort.SessionOptions | None
                  ) -> tuple[ort.InferenceSession, int | None]:
    """Load the graph and check its signature; returns the session and its static width."""
    if options is None:  # a quick load for checking only
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        _fail(root, name, f"not an ONNX model that onnxruntime {ort.__version__} can load "
                          f"({_first_line(exc)})")
    if problems := signature_problems(session):
        _fail(root, name, problems[0])
    return session, output_width(session)


def _tokenizer_settings(path: Path, tokenizer: Tokenizer) -> dict[str, Any]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    settings: dict[str, Any] = {
        "file": TOKENIZER_FILE,
        "type": (raw.get("model") or {}).get("type"),
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": {role: next(t for t in tokens if tokenizer.token_to_id(t) is not None)
                           for role, tokens in _SPECIAL_ROLES.items()
                           if any(tokenizer.token_to_id(t) is not None for t in tokens)},
    }
    lowercase = _lowercases(raw.get("normalizer"))
    if lowercase is not None:
        settings["lowercase"] = lowercase
    return settings


def _lowercases(node: Any) -> bool | None:
    """Whether a tokenizer.json normalizer lowercases; None when it cannot be told."""
    if node is None:
        return False
    kind = node.get("type")
    if kind == "BertNormalizer":
        return bool(node.get("lowercase", True))
    if kind == "Lowercase":
        return True
    if kind == "Sequence":
        found = [_lowercases(child) for child in node.get("normalizers", [])]
        return True if True in found else (None if None in found else False)
    if kind in {"NFC", "NFD", "NFKC", "NFKD", "Strip", "StripAccents", "Replace", "Prepend"}:
        return False
    return None


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    backup = out.with_name(f".{out.name}.{os.getpid()}.old")
    os.rename(out, backup)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(backup, out)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} in the manifest is not JSON-serialisable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
