"""Writing bundles, reading them back, and catching every kind of damage on load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgesent import Bundle, BundleError, EdgesentError, load_bundle, write_bundle
from edgesent.bundle import FORMAT_VERSION, MANIFEST_NAME, Manifest, open_bundle, sha256_file
from edgesent.tokenization import EncodingSettings

LABELS3 = ("negative", "neutral", "positive")
TINY_ENCODING = EncodingSettings(max_length=32, truncation="head_tail", head_tokens=8)


def test_round_trip_manifest(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert isinstance(bundle, Bundle) and isinstance(manifest, Manifest)
    assert manifest.format == "edgesent-bundle" and manifest.format_version == FORMAT_VERSION
    assert manifest.task == "text-classification"
    assert bundle.labels == ["negative", "positive"]
    assert bundle.encoding == TINY_ENCODING
    assert bundle.temperature == 1.0
    assert bundle.name == "tiny-test"
    assert manifest.model["precision"] == "int8"
    assert manifest.model["inputs"] == ["input_ids", "attention_mask"]
    assert manifest.model["outputs"] == ["logits"]
    assert manifest.tokenizer["lowercase"] is True
    assert manifest.tokenizer["special_tokens"]["cls"] == "[CLS]"
    assert manifest.tokenizer["vocab_size"] > 50
    assert manifest.provenance["base_model"] == "tiny-random"
    assert manifest.provenance["edgesent_version"]
    assert manifest.provenance["created"].startswith("20")
    assert manifest.metrics == {"test": {"accuracy": 0.91, "macro_f1": 0.9}}
    assert bundle.model_path == tiny_bundle / "model.onnx"
    assert bundle.tokenizer_path == tiny_bundle / "tokenizer.json"


def test_manifest_reads_like_the_json_file(tiny_bundle: Path) -> None:
    manifest = load_bundle(tiny_bundle).manifest
    on_disk = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest.to_dict() == on_disk
    assert dict(manifest) == on_disk
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["encoding"] == {"max_length": 32, "truncation": "head_tail",
                                    "head_tokens": 8}
    assert "files" in manifest and "nonsense" not in manifest
    with pytest.raises(KeyError):
        manifest["nonsense"]


def test_files_are_hashed_and_sized(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert set(bundle.manifest.files) == {"model.onnx", "tokenizer.json"}
    for name, entry in bundle.manifest.files.items():
        assert entry["sha256"] == sha256_file(tiny_bundle / name)
        assert entry["size"] == (tiny_bundle / name).stat().st_size
    on_disk = sum(p.stat().st_size for p in tiny_bundle.iterdir())
    assert bundle.size_bytes == on_disk


def test_open_bundle_returns_a_working_session(tiny_bundle: Path) -> None:
    bundle, session, tokenizer = open_bundle(tiny_bundle)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert tokenizer.token_to_id("[CLS]") is not None
    assert bundle.path == tiny_bundle


def test_path_of_manifest_file_is_accepted(tiny_bundle: Path) -> None:
    assert load_bundle(tiny_bundle / MANIFEST_NAME).path == tiny_bundle


def test_write_refuses_to_overwrite(tiny_bundle: Path, tmp_path: Path) -> None:
    target = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    kwargs = dict(model_file=tiny_bundle / "model.onnx",
                  tokenizer_file=tiny_bundle / "tokenizer.json",
                  labels=["bad", "good"], encoding=TINY_ENCODING)
    with pytest.raises(BundleError, match="already exists; pass overwrite=True"):
        write_bundle(target, **kwargs)
    assert load_bundle(target).labels == ["negative", "positive"]
    written = write_bundle(target, overwrite=True, **kwargs)
    assert written.labels == ["bad", "good"]
    assert load_bundle(target).labels == ["bad", "good"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or backup left


def test_write_into_empty_directory_and_extra_files(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    notes = tmp_path / "README.md"
    notes.write_text("model card\n", encoding="utf-8")
    bundle = write_bundle(
        tmp_path / "out", model_file=tiny_bundle / "model.onnx",
        tokenizer_file=tiny_bundle / "tokenizer.json", labels=["negative", "positive"],
        encoding={"max_length": 16, "truncation": "tail", "head_tokens": 0},
        temperature=1.5, precision="fp32", quantization=None, extra_files=[notes],
        metrics={"acc": np.float32(0.5), "confusion": np.array([[1, 2], [3, 4]])})
    assert (tmp_path / "out" / "README.md").read_text(encoding="utf-8") == "model card\n"
    assert "README.md" in bundle.manifest.files
    loaded = load_bundle(tmp_path / "out")
    assert loaded.manifest.metrics == {"acc": 0.5, "confusion": [[1, 2], [3, 4]]}
    assert loaded.encoding == EncodingSettings(16, "tail", 0)
    assert loaded.temperature == 1.5 and loaded.manifest.model["precision"] == "fp32"


def test_write_checks_width_against_labels(tokenizer_file: Path, tmp_path: Path,
                                           make_graph: Callable[..., onnx.ModelProto]) -> None:
    onnx.save(make_graph(3), str(tmp_path / "m.onnx"))
    with pytest.raises(BundleError, match=r"outputs 3 logits .* lists 2 labels") as info:
        write_bundle(tmp_path / "b", model_file=tmp_path / "m.onnx",
                     tokenizer_file=tokenizer_file, labels=["negative", "positive"],
                     encoding=TINY_ENCODING)
    assert "model.onnx" in str(info.value)
    assert not (tmp_path / "b").exists()


def test_write_probes_dynamic_width(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle(labels=LABELS3, static_width=False)
    assert load_bundle(path).labels == list(LABELS3)
    _, session, _ = open_bundle(path)
    assert session.get_outputs()[0].shape[1] == "n_labels"  # the probe, not the shape, told
    with pytest.raises(BundleError, match="outputs 3 logits"):
        make_bundle(labels=("negative", "positive"), n_logits=3, static_width=False)


@pytest.mark.parametrize(("change", "problem"), [
    ({"labels": ["a", "a"]}, '"labels" has duplicates'),
    ({"temperature": 0.0}, '"temperature" must be a positive number'),
])
def test_write_validates_the_manifest(tiny_bundle: Path, tmp_path: Path, change: dict,
                                      problem: str) -> None:
    kwargs = dict(model_file=tiny_bundle / "model.onnx", labels=["negative", "positive"],
                  tokenizer_file=tiny_bundle / "tokenizer.json", encoding=TINY_ENCODING)
    with pytest.raises(BundleError) as info:
        write_bundle(tmp_path / "b", **{**kwargs, **change})
    assert str(info.value).startswith(f"bundle {tmp_path / 'b'}: edgesent.json: {problem}")
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_missing_source(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(tmp_path / "b", model_file=tmp_path / "nope.onnx",
                     tokenizer_file=tiny_bundle / "tokenizer.json",
                     labels=["negative", "positive"], encoding=TINY_ENCODING)


# -- damage caught on load ------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


class Damage:
    """What a corruption case may do to a bundle copy."""

    def __init__(self, path: Path, edit: Callable[..., None], replace: Callable[..., None]):
        self.path, self._edit, self._replace = path, edit, replace

    def edit(self, change: Callable[[dict], object]) -> None:
        self._edit(self.path, change)

    def replace(self, name: str, data: bytes) -> None:
        """Swap a file's bytes and fix its checksum, so only deeper checks can object."""
        self._replace(self.path, name, data, fix_checksum=True)

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    def remove(self, name: str) -> None:
        (self.path / name).unlink()

    def truncate(self, name: str, size: int) -> None:
        (self.path / name).write_bytes((self.path / name).read_bytes()[:size])


BAD_JSON = '{\n  "format": "edgesent-bundle",\n  labels: []\n}'
M = MANIFEST_NAME
CORRUPTIONS: dict[str, tuple[Callable[[Damage], object], str, str]] = {
    "missing manifest": (lambda d: d.remove(M), M, "missing"),
    "bad json": (lambda d: d.write(M, BAD_JSON), M, "invalid JSON at line 3, column 3"),
    "not an object": (lambda d: d.write(M, "[1, 2]"), M, "JSON object"),
    "unknown format": (lambda d: d.edit(lambda m: m.update(format="other")), M,
                       "unknown format 'other'"),
    "newer version": (lambda d: d.edit(lambda m: m.update(format_version=99)), M,
                      "upgrade edgesent"),
    "missing key": (lambda d: d.edit(lambda m: m.pop("labels")), M,
                    'required key "labels" is missing'),
    "wrong type": (lambda d: d.edit(lambda m: m.update(temperature="hot")), M,
                   '"temperature" must be int or float'),
    "bad encoding": (lambda d: d.edit(lambda m: m["encoding"].update(truncation="middle")), M,
                     "encoding"),
    "duplicate labels": (lambda d: d.edit(lambda m: m.update(labels=["a", "a"])), M,
                         "duplicates"),
    "unsafe file name": (lambda d: d.edit(lambda m: m["files"].update(
        {"../evil": {"sha256": "0" * 64, "size": 1}})), M, "not a plain file name"),
    "missing file": (lambda d: d.remove("tokenizer.json"), "tokenizer.json", "missing"),
    "tampered byte": (lambda d: _flip_byte(d.path / "model.onnx"), "model.onnx",
                      "sha256 does not match"),
    "truncated file": (lambda d: d.truncate("model.onnx", 100), "model.onnx",
                       "size is 100 bytes"),
    "garbage model": (lambda d: d.replace("model.onnx", b"\x00garbage" * 64), "model.onnx",
                      "not an ONNX model"),
    "garbage tokenizer": (lambda d: d.replace("tokenizer.json", b'{"no": "tokenizer"}'),
                          "tokenizer.json", "not a usable tokenizers file"),
    "labels vs width": (lambda d: d.edit(lambda m: m.update(labels=list(LABELS3))),
                        "model.onnx", "outputs 2 logits per text but the manifest lists 3"),
    "swapped labels": (lambda d: d.edit(lambda m: m["labels"].reverse()), M,
                       '"labels" disagrees with the graph'),
    "edited temperature": (lambda d: d.edit(lambda m: m.update(temperature=2.5)), M,
                           '"temperature" disagrees with the graph'),
    "edited max_length": (lambda d: d.edit(lambda m: m["encoding"].update(max_length=64)), M,
                          '"encoding" disagrees with the graph'),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_is_reported(case: str, bundle_copy: Path, edit_manifest: Callable[..., None],
                                replace_file: Callable[..., None]) -> None:
    damage, file_name, problem = CORRUPTIONS[case]
    damage(Damage(bundle_copy, edit_manifest, replace_file))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    message = str(info.value)
    assert str(bundle_copy) in message
    assert file_name in message
    assert problem in message
    assert "\n" not in message
    assert isinstance(info.value, EdgesentError)


def test_graph_without_logits_output(bundle_copy: Path, replace_file: Callable[..., None],
                                     make_graph: Callable[..., onnx.ModelProto]) -> None:
    graph = make_graph(2)
    graph.graph.output[0].name = "scores"
    graph.graph.node[-1].output[0] = "scores"
    replace_file(bundle_copy, "model.onnx", graph.SerializeToString(), fix_checksum=True)
    with pytest.raises(BundleError, match="no output named 'logits'"):
        load_bundle(bundle_copy)


def test_graph_with_inputs_edgesent_cannot_feed(
        bundle_copy: Path, replace_file: Callable[..., None],
        make_graph: Callable[..., onnx.ModelProto]) -> None:
    graph = make_graph(2)
    graph.graph.input.append(onnx.helper.make_tensor_value_info(
        "pixel_values", onnx.TensorProto.FLOAT, ["batch", 3]))
    replace_file(bundle_copy, "model.onnx", graph.SerializeToString(), fix_checksum=True)
    with pytest.raises(BundleError, match=r"inputs edgesent cannot feed: \['pixel_values'\]"):
        load_bundle(bundle_copy)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such directory"):
        load_bundle(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "file")


def test_verify_false_skips_checksums(bundle_copy: Path) -> None:
    _flip_byte(bundle_copy / "tokenizer.json")
    assert load_bundle(bundle_copy, verify=False).labels == ["negative", "positive"]
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


# -- what decides an answer is bound to the graph ---------------------------------------------


def test_checks_say_what_was_verified(tiny_bundle: Path) -> None:
    checks = load_bundle(tiny_bundle).checks
    assert any("sha256" in check and "model.onnx" in check for check in checks)
    assert any("labels, temperature, encoding match the graph" in check for check in checks)


def test_graph_without_binding_is_refused(bundle_copy: Path, replace_file: Callable[..., None],
                                          make_graph: Callable[..., onnx.ModelProto]) -> None:
    replace_file(bundle_copy, "model.onnx", make_graph(2).SerializeToString(), fix_checksum=True)
    with pytest.raises(BundleError, match=r"model\.onnx: graph metadata has no 'edgesent\.labels'"):
        load_bundle(bundle_copy)


def test_format_1_bundle_loads_but_says_it_is_unbound(bundle_copy: Path,
                                                      edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle_copy, lambda m: m.update(format_version=1))
    checks = load_bundle(bundle_copy).checks
    assert any("NOT bound" in check for check in checks)


def test_format_1_max_length_beyond_the_position_table(
        make_bundle: Callable[..., Path], edit_manifest: Callable[..., None]) -> None:
    path = make_bundle(max_positions=32)
    assert load_bundle(path).encoding.max_length == 32
    edit_manifest(path, lambda m: m.update(format_version=1, encoding={
        "max_length": 64, "truncation": "head_tail", "head_tokens": 8}))
    with pytest.raises(BundleError, match=r"model.onnx: the graph fails on an input of 64 tokens"):
        load_bundle(path)


def test_write_refuses_max_length_beyond_the_position_table(
        make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(BundleError, match="max_length"):
        make_bundle(max_positions=16)


def test_rewriting_a_bound_graph_rebinds_it(tiny_bundle: Path, tokenizer_file: Path,
                                            tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "again", model_file=tiny_bundle / "model.onnx",
                       tokenizer_file=tokenizer_file, labels=["negative", "positive"],
                       encoding=TINY_ENCODING, temperature=1.5)
    assert load_bundle(out.path).temperature == 1.5
    same = write_bundle(tmp_path / "same", model_file=tiny_bundle / "model.onnx",
                        tokenizer_file=tokenizer_file, labels=["negative", "positive"],
                        encoding=TINY_ENCODING)
    assert (same.path / "model.onnx").read_bytes() == (tiny_bundle / "model.onnx").read_bytes()
