"""The benchmark harness, end to end in quick mode on tiny models, plus its pure helpers.

The quick run builds a tiny ``edgesent build`` directory (tiny BERT teacher, tiny
DistilBERT student, from tests/export/conftest.py) and a tiny review data directory in the
real file format, then checks that the JSON, the Markdown and the PNGs hold sane figures.
No assertion is about speed.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.config import RunConfig  # noqa: E402
from benchmarks.timing import percentile  # noqa: E402


def _export_fixtures() -> Any:
    """tests/export/conftest.py, loaded under its own name (a second module named
    ``conftest`` would clash), so its fixtures can be used here."""
    path = Path(__file__).parent / "export" / "conftest.py"
    spec = importlib.util.spec_from_file_location("edgesent_bench_export_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_fixtures = _export_fixtures()
tiny_tokenizer_dir = _fixtures.tiny_tokenizer_dir
tiny_distilbert_dir = _fixtures.tiny_distilbert_dir
trained_tiny_distilbert_dir = _fixtures.trained_tiny_distilbert_dir
tiny_bert_dir = _fixtures.tiny_bert_dir
make_reviews = _fixtures.make_reviews

FULL_STACK = ("torch", "transformers", "optimum.onnxruntime", "sklearn", "vaderSentiment",
              "matplotlib")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _require_full_stack() -> None:
    for module in FULL_STACK:
        pytest.importorskip(module, reason="the benchmark needs the [export] and [bench] extras")


def _write_jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _row(text: str, label: int, split: str, domain: str | None, **extra: Any) -> dict[str, Any]:
    return {"set": "tiny", "split": split, "domain": domain, "title": None, "text": text,
            "label": "pos" if label else "neg", "stars": None, **extra}


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FDU-MTL-, pycaret- and MARC-shaped files of synthetic reviews; one test text also
    stands in the training data (it must be removed from the test set)."""
    root = tmp_path_factory.mktemp("reviews")
    train, test, marc = make_reviews(240, seed=3), make_reviews(80, seed=4), make_reviews(40, 5)
    domains = ("books", "kitchen_housewares", "imdb", "MR")
    fdu = [_row(t, y, "train", domains[i % 4]) for i, (t, y) in
           enumerate(zip(train.texts[:160], train.labels[:160], strict=True))]
    fdu += [_row(t, y, "test", domains[i % 4]) for i, (t, y) in
            enumerate(zip(test.texts, test.labels, strict=True))]
    fdu.append(_row(train.texts[0], train.labels[0], "test", "books"))  # leaked
    _write_jsonl_gz(root / "fdu_mtl.jsonl.gz", fdu)
    _write_jsonl_gz(root / "pycaret_amazon.jsonl.gz", [
        _row(t, y, "all", None) for t, y in zip(train.texts[160:], train.labels[160:],
                                                 strict=True)])
    marc_rows = []
    for i, (text, label) in enumerate(zip(marc.texts, marc.labels, strict=True)):
        stars = 3 if i % 10 == 0 else (5 if label else 1)
        marc_rows.append({**_row(text, label, "val", f"en_{i:07d}", title="Review"),
                          "stars": stars})
    _write_jsonl_gz(root / "marc_en_val.jsonl.gz", marc_rows)
    return root


@pytest.fixture(scope="module")
def tiny_build_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path,
                   trained_tiny_distilbert_dir: Path) -> Path:
    """The layout `edgesent build` leaves: teacher/best (BERT), student/best (DistilBERT)."""
    root = tmp_path_factory.mktemp("build")
    shutil.copytree(tiny_bert_dir, root / "teacher" / "best")
    shutil.copytree(trained_tiny_distilbert_dir, root / "student" / "best")
    return root


# teacher-pytorch and teacher-optimum share their runners with distilbert-ref and add ~15 s
# of imports each: they are checked in-process below instead of in the quick run.
QUICK_SYSTEMS = ("edgesent", "student-fp32", "teacher-int8", "distilbert-ref", "tfidf-lr",
                 "vader")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, tiny_build_dir: Path,
              tiny_data_dir: Path) -> tuple[int, Path, dict[str, Any]]:
    _require_full_stack()
    from benchmarks.__main__ import main

    out = tmp_path_factory.mktemp("bench-out")
    code = main(["run", "--quick", "--bundle", str(tiny_bundle), "--build-dir",
                 str(tiny_build_dir), "--data", str(tiny_data_dir), "--out", str(out),
                 "--work-dir", str(out / "work"), "--reference-config", "tiny", "--threads", "1",
                 "--cell-seconds", "0.1", "--systems", ",".join(QUICK_SYSTEMS)])
    results = json.loads((out / "results.json").read_text("utf-8"))
    return code, out, results


def test_quick_run_writes_every_output(quick_run: tuple[int, Path, dict[str, Any]]) -> None:
    code, out, results = quick_run
    assert code == 0
    for name in ("accuracy_vs_latency.png", "latency_vs_length.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert results["mode"] == "quick"
    assert results["skipped"] == {}
    assert list(results["systems"]) == list(QUICK_SYSTEMS)
    machine = results["machine"]
    assert machine["cpu"] and machine["cpus_usable"] >= 1 and machine["date"]
    assert machine["versions"]["onnxruntime"] and machine["versions"]["torch"]
    table = (out / "results.md").read_text("utf-8")
    for name in QUICK_SYSTEMS:
        assert f"| {name}" in table or f"| **{name}**" in table
    assert "n/a (random weights)" in table
    assert "× ref" in table


def test_quick_run_figures_are_sane(quick_run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, results = quick_run
    for name, system in results["systems"].items():
        assert system["errors"] == [], name
        cells = system["timing"]["1"]
        for length in (16, 64, 256):
            latency = cells[f"latency@{length}"]
            assert 0 < latency["p50_ms"] <= latency["p95_ms"], name
        assert cells["throughput"]["reviews_per_s"] > 0, name
        assert system["size"]["model_bytes"] > 0, name
        assert system["size"]["environment_bytes"] > 0, name
        assert system["eval"]["peak_rss_kb"] > 10_000, name
        assert system["eval"]["n"] >= 1, name
        assert system["cold_start"]["median_s"] > 0, name
        assert system["cold_start"]["first_output"], name
    ref = results["systems"]["distilbert-ref"]
    assert "accuracy" not in ref and ref["has_accuracy"] is False
    for name in QUICK_SYSTEMS:
        if name == "distilbert-ref":
            continue
        accuracy = results["systems"][name]["accuracy"]
        assert set(accuracy) >= {"fdu_mtl_test", "fdu_mtl_test:products", "marc_en_val",
                                 "fdu_mtl_test:imdb"}, name
        for group in accuracy.values():
            assert 0.0 <= group["accuracy"] <= 1.0 and group["n"] > 0
    # The lexical signal of the synthetic reviews is easy for TF-IDF.
    assert results["systems"]["tfidf-lr"]["accuracy"]["fdu_mtl_test"]["accuracy"] > 0.8
    # The reference is capped like the slow systems: 50 test rows per set, at most 100 in all.
    assert results["systems"]["distilbert-ref"]["eval"]["n"] <= 100
    assert results["systems"]["vader"]["eval"]["n"] >= 100


def test_quick_run_data_and_environments(quick_run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, results = quick_run
    data = results["data"]
    assert data["test_rows_also_in_training_data_removed"]["fdu_mtl_test"] >= 1
    assert data["rows"]["marc_en_val"] == 36  # the 3-star rows are dropped
    systems = results["systems"]
    edgesent_env = systems["edgesent"]["size"]["distributions"]
    assert {"edgesent", "onnxruntime", "numpy", "tokenizers", "click"} <= set(edgesent_env)
    assert not {"torch", "transformers", "optimum"} & set(edgesent_env)
    imported = set(systems["edgesent"]["size"]["imported"])
    assert "onnxruntime" in imported and not {"torch", "transformers", "optimum"} & imported
    assert {"torch", "transformers"} <= set(systems["distilbert-ref"]["size"]["distributions"])
    assert systems["distilbert-ref"]["size"]["environment_bytes"] > \
        systems["edgesent"]["size"]["environment_bytes"]
    # Timing texts are cut to exact token counts with the teacher's tokenizer.
    assert systems["teacher-int8"]["tokens"]["16"] == 16
    assert systems["distilbert-ref"]["tokens"]["16"] == 16


def test_pipeline_and_optimum_runners_agree(quick_run: tuple[int, Path, dict[str, Any]],
                                            tiny_bundle: Path, tiny_build_dir: Path,
                                            tmp_path: Path) -> None:
    """The teacher through the PyTorch pipeline and through Optimum's ORTModel pipeline
    (the same fp32 weights) gives the same answers; their cold-start scripts compile."""
    from benchmarks.coldstart import write_script
    from benchmarks.runners import load_runner
    from benchmarks.systems import prepare_systems

    _, out, _ = quick_run
    cfg = RunConfig.for_mode(True, bundle=tiny_bundle, build_dir=tiny_build_dir,
                             systems=("teacher-pytorch", "teacher-optimum", "teacher-int8"))
    specs, skipped, _ = prepare_systems(cfg, None, out / "work")  # reuses the teacher export
    assert skipped == {} and [s.kind for s in specs] == ["pipeline", "optimum", "onnx"]
    texts = make_reviews(24, seed=9).texts
    outputs = []
    for spec in specs[:2]:
        runner = load_runner(spec.as_dict(), threads=1)
        assert runner.token_count(texts[0]) == len(runner.tokenizer(texts[0])["input_ids"])
        assert runner.predict_one(texts[0]) in ("negative", "positive")
        outputs.append(runner.pipe(texts, batch_size=8, truncation=True,
                                   max_length=spec.max_length))
    for torch_out, ort_out in zip(*outputs, strict=True):
        if torch_out["label"] == ort_out["label"]:
            assert torch_out["score"] == pytest.approx(ort_out["score"], abs=1e-4)
        else:  # a near tie may flip
            assert torch_out["score"] == pytest.approx(0.5, abs=1e-4)
    for spec in specs:
        script = write_script(spec, tmp_path)
        compile(script.read_text("utf-8"), str(script), "exec")


def test_build_layout_finds_the_students_fp32_export(quick_run: tuple[int, Path, dict[str, Any]],
                                                     tiny_build_dir: Path, tmp_path: Path) -> None:
    from benchmarks.systems import BuildLayout

    _, out, _ = quick_run
    build = tmp_path / "build"
    shutil.copytree(tiny_build_dir, build)
    (build / "work" / "gate" / "int8").mkdir(parents=True)  # as edgesent_export.package
    (build / "work" / "onnx-fp32").mkdir()
    shutil.copy(out / "work" / "teacher-int8" / "model.onnx", build / "work" / "gate" / "int8")
    shutil.copy(out / "work" / "student-fp32" / "model.onnx", build / "work" / "onnx-fp32")
    layout = BuildLayout.find(build)
    assert layout.teacher == build / "teacher" / "best"
    assert layout.student == build / "student" / "best"
    assert layout.fp32_onnx == build / "work" / "onnx-fp32" / "model.onnx"
    (build / "work" / "onnx-fp32" / "model.onnx").unlink()  # any fp32 graph will do, not int8
    shutil.copy(out / "work" / "student-fp32" / "model.onnx", build / "work" / "fp32.onnx")
    assert BuildLayout.find(build).fp32_onnx == build / "work" / "fp32.onnx"
    shutil.copytree(build / "student" / "best", build / "student-small")
    assert BuildLayout.find(build).student == build / "student-small"  # preferred


def test_percentile_interpolates() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


def test_config_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown systems"):
        RunConfig.for_mode(False, systems=("edgesent", "nope")).validate()
    with pytest.raises(ValueError, match="threads"):
        RunConfig.for_mode(True, threads=(0,)).validate()
    cfg = RunConfig.for_mode(False)
    assert cfg.eval_cap("teacher-pytorch") == 1000 and cfg.eval_cap("edgesent") is None


def test_cli_names_an_unknown_system(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--systems", "edgesent,bert-large"])
    assert exit_info.value.code == 2
    assert "unknown systems bert-large" in capsys.readouterr().err


def test_exact_length_texts(tiny_tokenizer_dir: Path) -> None:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from benchmarks.workload import length_texts

    texts = length_texts(tiny_tokenizer_dir / "tokenizer.json", None, (8, 40, 200), variants=3)
    tokenizer = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    for length, variants in texts.items():
        assert len(variants) == 3
        for text in variants:
            assert len(tokenizer.encode(text).ids) == length


def test_tfidf_round_trip_without_pickle(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from benchmarks.baselines import load_tfidf, save_tfidf, train_tfidf

    reviews = make_reviews(120, seed=7)
    names = ["negative", "positive"]
    model = train_tfidf(reviews.texts, [names[y] for y in reviews.labels])
    files = save_tfidf(model, tmp_path / "tfidf")
    assert {p.suffix for p in files} == {".json", ".npz"}
    probe = make_reviews(40, seed=8)
    loaded = load_tfidf(tmp_path / "tfidf")
    assert loaded.predict(probe.texts) == model.predict(probe.texts)
    correct = sum(p == names[y] for p, y in zip(loaded.predict(probe.texts), probe.labels,
                                                 strict=True))
    assert correct >= 36
