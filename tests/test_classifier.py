"""Classifier: real tokenizer, real ONNX Runtime session on the tiny graph."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgesent.models
from edgesent import BundleError, Classifier, Prediction, write_bundle
from edgesent.metrics import softmax
from edgesent.runner import resolve_threads
from edgesent.tokenization import EncodingSettings

REVIEWS = [
    "Great product, love it",
    "awful. it broke after a week and I want a refund",
    "The box arrived",
    "excellent price and perfect quality, would recommend to my happy family",
    "terrible",
    "It works okay, the color is the size of a cable",
    "poor battery, waste of money, disappointed",
]


def test_probabilities_sum_to_one(tiny_classifier: Classifier) -> None:
    probs = tiny_classifier.predict_proba(REVIEWS)
    assert probs.shape == (len(REVIEWS), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (probs > 0).all()
    assert len({round(p, 6) for p in probs[:, 1]}) == len(REVIEWS)  # answers depend on text


def test_labels_make_sense(tiny_classifier: Classifier) -> None:
    predictions = tiny_classifier.predict(REVIEWS)
    labels = [p.label for p in predictions]
    assert labels[0] == "positive" and labels[3] == "positive"
    assert labels[1] == "negative" and labels[4] == "negative" and labels[6] == "negative"
    for p in predictions:
        assert p.ok and p.error is None
        assert set(p.scores) == {"negative", "positive"}
        assert p.score == max(p.scores.values()) == p.scores[p.label]


def test_single_string_gives_one_prediction(tiny_classifier: Classifier) -> None:
    one = tiny_classifier.predict("Great product, love it")
    assert isinstance(one, Prediction)
    assert one == tiny_classifier.predict(["Great product, love it"])[0]
    assert tiny_classifier.predict_proba("terrible").shape == (1, 2)


def test_any_iterable_is_accepted(tiny_classifier: Classifier) -> None:
    expected = tiny_classifier.predict(REVIEWS)
    assert tiny_classifier.predict(tuple(REVIEWS)) == expected
    assert tiny_classifier.predict(text for text in REVIEWS) == expected
    assert tiny_classifier.predict([]) == []
    assert tiny_classifier.predict_proba([]).shape == (0, 2)


def test_titles_are_joined_before_the_texts(tiny_classifier: Classifier) -> None:
    from edgesent.inputs import join_title

    texts, titles = ["love it", "awful refund", "great"], ["terrible, awful", None, ""]
    titled = tiny_classifier.predict_proba(texts, titles=titles)
    joined = tiny_classifier.predict_proba([join_title(t, x) for t, x in
                                            zip(titles, texts, strict=True)])
    np.testing.assert_array_equal(titled, joined)
    plain = tiny_classifier.predict_proba(texts)
    assert not np.allclose(titled[0], plain[0])  # the title changed the answer
    np.testing.assert_array_equal(titled[1:], plain[1:])  # no title: the text alone
    one = tiny_classifier.predict("love it", titles="terrible, awful")
    assert one == tiny_classifier.predict("terrible, awful. love it")
    assert one.label == "negative" and tiny_classifier.predict("love it").label == "positive"
    with pytest.raises(ValueError, match=r"1 title\(s\) for 3 text\(s\)"):
        tiny_classifier.predict(texts, titles=["one"])
    with pytest.raises(TypeError, match=r"titles\[1\] is int"):
        tiny_classifier.predict(["a", "b"], titles=["x", 3])  # type: ignore[list-item]


def test_batching_does_not_change_answers(tiny_classifier: Classifier) -> None:
    texts = [*REVIEWS * 3, "great " * 40, "awful " * 25, "ok"]
    one_by_one = np.vstack([tiny_classifier.predict_logits([t]) for t in texts])
    for batch_size in (1, 2, 5, 64):
        batched = tiny_classifier.predict_logits(texts, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_order_is_restored(tiny_classifier: Classifier) -> None:
    forward = tiny_classifier.predict_logits(REVIEWS, batch_size=2)
    backward = tiny_classifier.predict_logits(REVIEWS[::-1], batch_size=2)
    np.testing.assert_allclose(backward[::-1], forward, rtol=1e-5, atol=1e-6)


def test_blank_texts_get_an_error_and_nan_rows(tiny_classifier: Classifier) -> None:
    texts = ["", "great", "   ", "\n\t", "awful"]
    predictions = tiny_classifier.predict(texts)
    for index in (0, 2, 3):
        p = predictions[index]
        assert (p.label, p.score, p.scores, p.error) == (None, None, {}, "empty text")
        assert not p.ok and p.to_dict() == {"error": "empty text"}
    assert predictions[1].label == "positive" and predictions[4].label == "negative"
    probs = tiny_classifier.predict_proba(texts)
    logits = tiny_classifier.predict_logits(texts)
    for array in (probs, logits):
        assert np.isnan(array[[0, 2, 3]]).all()
        assert not np.isnan(array[[1, 4]]).any()
    assert np.isnan(tiny_classifier.predict_proba(["", " "])).all()


def test_non_strings_are_refused_by_index(tiny_classifier: Classifier) -> None:
    with pytest.raises(TypeError, match=r"texts\[2\] is int, expected str"):
        tiny_classifier.predict(["a", "b", 3])
    with pytest.raises(TypeError, match="bytes"):
        tiny_classifier.predict(b"great")
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        tiny_classifier.predict_proba([None])


def test_bad_arguments(tiny_bundle: Path, tiny_classifier: Classifier) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        tiny_classifier.predict(["great"], batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        Classifier.load(tiny_bundle, threads=0)


def test_threads_and_metadata(tiny_bundle: Path) -> None:
    clf = Classifier.load(tiny_bundle, threads=2)
    assert clf.threads == 2
    assert clf.labels == ["negative", "positive"]
    assert clf.manifest.name == "tiny-test" and clf.bundle.path == tiny_bundle
    assert "tiny-test" in repr(clf)
    assert 1 <= resolve_threads() <= 8
    assert Classifier.load(tiny_bundle).threads == resolve_threads()


def test_no_default_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(edgesent.models, "DEFAULT_MODEL", tmp_path / "absent")
    with pytest.raises(BundleError, match="ships no default model; pass the path"):
        Classifier.load()


def test_temperature_scales_probabilities_not_logits(make_bundle: Callable[..., Path],
                                                     tiny_classifier: Classifier) -> None:
    warm = Classifier.load(make_bundle(temperature=2.0), threads=1)
    logits = tiny_classifier.predict_logits(REVIEWS)
    np.testing.assert_array_equal(warm.predict_logits(REVIEWS), logits)
    np.testing.assert_allclose(warm.predict_proba(REVIEWS), softmax(logits / 2.0), atol=1e-12)
    assert not np.allclose(warm.predict_proba(REVIEWS), tiny_classifier.predict_proba(REVIEWS))


def test_softmax_is_stable() -> None:
    probs = softmax(np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(probs[1], [1 / 3] * 3)


def test_three_labels(make_bundle: Callable[..., Path]) -> None:
    clf = Classifier.load(make_bundle(labels=("negative", "neutral", "positive")), threads=1)
    assert clf.predict_proba(REVIEWS).shape == (len(REVIEWS), 3)
    assert clf.predict("great great love").label == "positive"
    assert clf.predict("awful terrible").label == "negative"


def test_head_and_tail_decide_a_long_review(make_bundle: Callable[..., Path]) -> None:
    # 10 content tokens: the first 4 and the last 6. The middle says the opposite.
    encoding = EncodingSettings(max_length=12, truncation="head_tail", head_tokens=4)
    clf = Classifier.load(make_bundle(encoding=encoding), threads=1)
    review = "awful " * 4 + "great " * 300 + "awful " * 6
    prediction = clf.predict(review)
    assert prediction.label == "negative"
    np.testing.assert_allclose(clf.predict_logits(review), clf.predict_logits("awful " * 10),
                               rtol=1e-6)
    head_only = Classifier.load(make_bundle(encoding=EncodingSettings(12, "head", 4)), threads=1)
    assert head_only.predict(review).label == "positive"  # 4 x awful, 6 x great


def test_review_of_several_megabytes(tiny_classifier: Classifier) -> None:
    review = "awful battery. " + "the box arrived and it was a phone. " * 150_000 + "refund!"
    assert len(review) > 5_000_000
    prediction = tiny_classifier.predict(review)
    assert prediction.ok and 0.0 < prediction.score <= 1.0
    assert tiny_classifier.predict(["great", review])[0].label == "positive"


def test_dynamic_width_is_checked_on_first_run(make_bundle: Callable[..., Path],
                                               make_graph: Callable[..., onnx.ModelProto],
                                               replace_file: Callable[..., None]) -> None:
    path = make_bundle(static_width=False)
    wide = make_graph(3, static_width=False)
    wide.metadata_props.extend(onnx.load(str(path / "model.onnx")).metadata_props)
    replace_file(path, "model.onnx", wide.SerializeToString(), fix_checksum=True)
    clf = Classifier.load(path, threads=1)  # width unknown until the graph runs
    with pytest.raises(BundleError, match=r"shape \(1, 3\) .* lists 2 labels") as info:
        clf.predict("great")
    assert str(path) in str(info.value) and "model.onnx" in str(info.value)


def test_thread_safety(tiny_bundle: Path) -> None:
    clf = Classifier.load(tiny_bundle, threads=2)
    texts = [*REVIEWS, "", "great " * 50]
    expected = clf.predict_logits(texts, batch_size=4)
    failures: list[str] = []

    def work(worker: int) -> None:
        try:
            for call in range(25):
                got = clf.predict_logits(texts, batch_size=4)
                if not np.array_equal(got, expected, equal_nan=True):
                    failures.append(f"worker {worker} call {call} differs")
                if clf.predict(texts[call % len(REVIEWS)]).label is None:
                    failures.append(f"worker {worker} call {call} lost its label")
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(f"worker {worker}: {exc!r}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def test_bert_style_graph_gets_zero_token_type_ids(tiny_bundle: Path, tmp_path: Path,
                                                    make_graph: Callable[..., onnx.ModelProto],
                                                    tiny_classifier: Classifier) -> None:
    graph = make_graph(2)
    graph.graph.input.append(onnx.helper.make_tensor_value_info(
        "token_type_ids", onnx.TensorProto.INT64, ["batch", "seq"]))
    onnx.save(graph, str(tmp_path / "bert.onnx"))
    bundle = write_bundle(tmp_path / "bundle", model_file=tmp_path / "bert.onnx",
                          tokenizer_file=tiny_bundle / "tokenizer.json",
                          labels=["negative", "positive"], encoding=tiny_classifier.bundle.encoding)
    assert bundle.manifest.model["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    clf = Classifier.load(bundle.path, threads=1)
    np.testing.assert_allclose(clf.predict_logits(REVIEWS), tiny_classifier.predict_logits(REVIEWS),
                               rtol=1e-6)


@pytest.mark.parametrize("text", ["\u200b", "\ufeff", "\x01\x02\x7f", "\u200d\u200c", " \u2060 "])
def test_text_without_content_tokens_is_blank(tiny_classifier: Classifier, text: str) -> None:
    prediction = tiny_classifier.predict(text)
    assert prediction.label is None and prediction.error == "empty text"
    assert np.isnan(tiny_classifier.predict_proba([text, "great"])[0]).all()


def test_lone_surrogates_are_read_as_replacement_characters(
        tiny_classifier: Classifier) -> None:
    broken = tiny_classifier.predict(["great value \ud83d", "x\ud800 awful"])
    repaired = tiny_classifier.predict(["great value \ufffd", "x\ufffd awful"])
    assert [p.label for p in broken] == [p.label for p in repaired] == ["positive", "negative"]
    assert broken[0].scores == repaired[0].scores


@pytest.mark.parametrize(("texts", "message"), [
    (None, "not None"),
    ({"a": 1}, "not a dict (pass its keys or values)"),
    (42, "not a int"),
    (bytearray(b"x"), "decode them first"),
])
def test_what_is_not_texts_is_named(tiny_classifier: Classifier, texts: object,
                                    message: str) -> None:
    with pytest.raises(TypeError, match=r"texts must be a string or an iterable") as info:
        tiny_classifier.predict(texts)  # type: ignore[call-overload]
    assert message in str(info.value)


def test_numpy_integers_are_integers(tiny_bundle: Path, tiny_classifier: Classifier) -> None:
    assert len(tiny_classifier.predict(["great", "awful"], batch_size=np.int64(8))) == 2
    assert Classifier.load(tiny_bundle, threads=np.int64(1)).threads == 1
    with pytest.raises(ValueError, match="batch_size"):
        tiny_classifier.predict(["great"], batch_size=2.5)  # type: ignore[arg-type]


def test_thread_counts_beyond_the_cpus_are_clamped(tiny_bundle: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="edgesent.runner"):
        clf = Classifier.load(tiny_bundle, threads=100_000)
    assert clf.threads == resolve_threads(100_000) <= 8 * 100
    assert "more than the" in caplog.text


def test_token_budget_and_progress(tiny_bundle: Path) -> None:
    clf = Classifier.load(tiny_bundle, threads=1, token_budget=16)
    done: list[int] = []
    texts = [*REVIEWS, "", "great " * 40]
    predictions = clf.predict(texts, on_progress=done.append)
    assert sum(done) == len(texts) and len(done) > 2
    assert [p.label for p in predictions] == [p.label for p in Classifier.load(
        tiny_bundle, threads=1).predict(texts)]
