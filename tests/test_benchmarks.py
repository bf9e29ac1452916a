"""The benchmark harness end to end in quick mode, on tiny models and tiny data.

A tiny review data directory in the real file format, the tiny bundle and a tiny BERT
(tests/export/conftest.py, the base model2vec distils) go through ``python -m benchmarks
run --quick --tiny``; the checks read the JSON, the Markdown and the PNG. No assertion is
about speed.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

for _module in ("torch", "transformers", "optimum.onnxruntime", "onnx", "sklearn",
                "vaderSentiment", "matplotlib", "fasttext", "model2vec"):
    pytest.importorskip(_module, reason="the benchmark needs the export, dev and bench extras")

from benchmarks.__main__ import length_texts, macs_per_review, main  # noqa: E402


def _export_fixtures() -> Any:
    """tests/export/conftest.py under its own name (a second ``conftest`` would clash)."""
    path = Path(__file__).parent / "export" / "conftest.py"
    sys.path.insert(0, str(path.parent))  # its helper modules sit beside it
    spec = importlib.util.spec_from_file_location("edgesent_bench_export_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_fixtures = _export_fixtures()
tiny_tokenizer_dir = _fixtures.tiny_tokenizer_dir
tiny_bert_dir = _fixtures.tiny_bert_dir
make_reviews = _fixtures.make_reviews

PNG = b"\x89PNG\r\n\x1a\n"
SYSTEMS = ("edgesent", "distilbert-ref", "tfidf-lr", "vader", "fasttext", "fasttext-ftz",
           "model2vec", "model2vec-mpnet")


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def _row(text: str, label: int, split: str, domain: str | None, **extra: Any) -> dict[str, Any]:
    return {"split": split, "domain": domain, "title": None, "text": text,
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
    _write(root / "fdu_mtl.jsonl.gz", fdu)
    _write(root / "pycaret_amazon.jsonl.gz", [_row(t, y, "all", None) for t, y in zip(
        train.texts[160:], train.labels[160:], strict=True)])
    _write(root / "marc_en_val.jsonl.gz", [
        {**_row(t, y, "val", None, title="Review"), "stars": 3 if i % 10 == 0 else 1 + 4 * y}
        for i, (t, y) in enumerate(zip(marc.texts, marc.labels, strict=True))])
    return root


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, tiny_data_dir: Path,
              tiny_bert_dir: Path) -> tuple[Any, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-out")
    result = CliRunner().invoke(main, [
        "run", "--quick", "--tiny", "--bundle", str(tiny_bundle), "--data", str(tiny_data_dir),
        "--out", str(out), "--work-dir", str(out / "work"), "--threads", "1", "--cell-seconds",
        "0.05", "--systems", ",".join(SYSTEMS), "--model2vec-base", str(tiny_bert_dir),
        "--mpnet", str(tiny_bert_dir)])
    return result, out, json.loads((out / "results.json").read_text("utf-8"))


def test_quick_run_writes_every_output(quick_run: tuple[Any, Path, dict[str, Any]]) -> None:
    result, out, res = quick_run
    assert result.exit_code == 0, result.output
    assert (out / "accuracy_vs_latency.png").read_bytes()[:8] == PNG
    assert res["config"]["mode"] == "quick" and res["skipped"] == {}
    assert list(res["systems"]) == list(SYSTEMS)
    assert res["machine"]["cpu"] and res["machine"]["versions"]["onnxruntime"]
    table = (out / "results.md").read_text("utf-8")
    for name in SYSTEMS:
        assert f"| {name}" in table or f"| **{name}**" in table
    for heading in ("n/a (random weights)", "× ref", "share of int8 peak", "batch independence",
                    "`predict --input`", "Accuracy per domain", "16 tok"):
        assert heading in table


def test_quick_run_figures_are_sane(quick_run: tuple[Any, Path, dict[str, Any]]) -> None:
    _, _, res = quick_run
    for name, s in res["systems"].items():
        assert s["errors"] == [], name
        for length in ("16", "64", "256"):
            latency = s["timing"]["1"]["latency"][length]
            assert 0 < latency["p50_ms"] <= latency["p95_ms"], name
        assert s["timing"]["1"]["throughput"]["reviews_per_s"] > 0, name
        assert s["model_bytes"] > 0 and s["environment"]["bytes"] > 0, name
        assert s["eval"]["peak_rss_kb"] > 10_000 and s["eval"]["n"] >= 1, name
        assert s["cold_start"]["median_s"] > 0, name
    ref = res["systems"]["distilbert-ref"]
    sample = sum(min(50, n) for name, n in res["data"]["rows"].items() if name != "train")
    assert "accuracy" not in ref and ref["eval"]["n"] == sample  # capped: 50 rows per set
    for name in SYSTEMS:
        if name != "distilbert-ref":
            accuracy = res["systems"][name]["accuracy"]
            assert {"fdu_mtl_test", "fdu_mtl_test:products", "marc_en_val",
                    "fdu_mtl_test:imdb"} <= set(accuracy), name
            assert all(0 <= g["accuracy"] <= 1 and g["n"] > 0 for g in accuracy.values())
    # The synthetic reviews' lexical signal is easy for the bag-of-words systems.
    for name in ("tfidf-lr", "fasttext"):
        assert res["systems"][name]["accuracy"]["fdu_mtl_test"]["accuracy"] > 0.8, name
    assert res["systems"]["vader"]["eval"]["n"] == 300  # test rows topped up for peak RSS


def test_quick_run_data_environments_and_extras(quick_run: tuple[Any, Path, dict[str, Any]]
                                                ) -> None:
    _, _, res = quick_run
    assert res["data"]["test_rows_also_in_training_data_removed"]["fdu_mtl_test"] >= 1
    assert res["data"]["rows"]["marc_en_val"] == 36  # the 3-star rows are dropped
    systems = res["systems"]
    edgesent = set(systems["edgesent"]["environment"]["distributions"])
    assert {"edgesent", "onnxruntime", "numpy", "tokenizers"} <= edgesent
    assert not {"torch", "transformers", "optimum"} & edgesent
    assert {"torch", "transformers"} <= set(systems["distilbert-ref"]["environment"][
        "distributions"])
    assert "torch" not in systems["model2vec"]["environment"]["distributions"]
    edgesent = systems["edgesent"]
    tokens = edgesent["tokens"]  # its own count of the timing texts, cut at its max length
    assert 0 < tokens["16"] <= tokens["64"] <= tokens["256"] <= 32
    same = edgesent["independence"]
    assert same["n"] == 64 and same["label_flips"] == 0 and same["max_prob_diff"] < 1e-3
    assert edgesent["int8_peak"]["share"] > 0
    assert "int8_peak" not in systems["fasttext"] and systems["vader"]["independence"] is None
    predict_file = edgesent["predict_file"]
    assert predict_file["n"] == 64 and predict_file["reviews_per_s"] > 0
    assert predict_file["runner_reviews_per_s"] > 0
    assert systems["model2vec-mpnet"]["spec"]["files"] != systems["model2vec"]["spec"]["files"]
    ftz, ft = systems["fasttext-ftz"], systems["fasttext"]
    assert ftz["model_bytes"] < ft["model_bytes"]


def test_macs_count_weight_products_and_attention(tiny_bundle: Path) -> None:
    """The tiny graph's MACs grow linearly in the weight products and add length² terms."""
    onnx_file = next(tiny_bundle.glob("*.onnx"))
    one, two = macs_per_review(str(onnx_file), 10), macs_per_review(str(onnx_file), 20)
    assert one > 0 and two >= 2 * one


def test_unknown_system_and_bad_threads_are_one_line_errors() -> None:
    result = CliRunner().invoke(main, ["run", "--systems", "edgesent,bert-large"])
    assert result.exit_code == 2 and "unknown systems bert-large" in result.output
    result = CliRunner().invoke(main, ["run", "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output


def test_exact_length_texts(tiny_tokenizer_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    for length in (8, 40, 200):
        texts = length_texts(tiny_tokenizer_dir / "tokenizer.json", make_reviews(50).texts,
                             length, 3, seed=1)
        assert len(texts) == 3
        assert [len(tokenizer.encode(t).ids) for t in texts] == [length] * 3
