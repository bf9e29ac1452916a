"""A teacher wider than the student, of another family, with its own vocabulary
(export/distill.py, export/build_checks.py): a tiny MPNet (hidden 64) whose token ids are
the tiny tokenizer's shifted by 4, as all-mpnet-base-v2's are bert-base-uncased's, taught
to a 32-wide DistilBERT student cut from a tiny BERT (``student_init``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from extras import EXPORT_REASON
from helpers_training import (
    TINY_ENCODING,
    formatted,
    load_model,
    one_line_error,
    tiny_config,
    to_reviews,
    write_csv,
)

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

from click.testing import CliRunner

from edgesent.cli import main
from edgesent.errors import InputError
from edgesent_export.build_checks import check_distill
from edgesent_export.distill import (
    TEACHER_LOGITS_FILE,
    DistillSettings,
    compare_teacher_sources,
    distill,
    teacher_agreement,
    teacher_logits,
)
from edgesent_export.finetune import finetune
from edgesent_export.student import make_student
from edgesent_export.torch_data import predict_logits
from edgesent_export.training_run import encode_reviews, load_tokenizer, make_encoder

LABELS = ["negative", "positive"]
SHIFT = 4  # MPNet's ids are bert-base-uncased's + 4


def _shifted_tokenizer(tiny_tokenizer_dir: Path, out: Path) -> None:
    """The tiny WordPiece vocabulary with four new tokens in front: every id moves by 4."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    vocab = {f"[X{i}]": i for i in range(SHIFT)}
    vocab.update({token: i + SHIFT for token, i in tokenizer.get_vocab().items()})
    tokenizer.model = models.WordPiece(vocab=vocab, unk_token="[UNK]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(out)


@pytest.fixture(scope="module")
def mpnet_dir(tiny_tokenizer_dir: Path, review_factory: Any,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MPNet classifier (hidden 64, 2 layers, 4 heads), fine-tuned here."""
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    base = tmp_path_factory.mktemp("mpnet_base")
    _shifted_tokenizer(tiny_tokenizer_dir, base)
    vocab = len(load_tokenizer(base).get_vocab())
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=128,
                         max_position_embeddings=160, pad_token_id=SHIFT, num_labels=2,
                         id2label=dict(enumerate(LABELS)),
                         label2id={name: i for i, name in enumerate(LABELS)})
    MPNetForSequenceClassification(config).save_pretrained(base, safe_serialization=True)
    data = formatted(review_factory(240, seed=3))
    result = finetune(base, data, tmp_path_factory.mktemp("mpnet"), encoding=TINY_ENCODING,
                      config=tiny_config(epochs=6, batch_size=8, learning_rate=3e-3),
                      progress=False)
    assert result.val_metrics["accuracy"] > 0.85
    return result.model_dir


def test_the_teacher_reads_the_text_through_its_own_tokenizer(
    mpnet_dir: Path, tiny_bert_dir: Path, review_factory: Any
) -> None:
    reviews = to_reviews(review_factory(40, seed=51))
    texts = [r.text for r in reviews]
    got = teacher_logits(mpnet_dir, texts, TINY_ENCODING, threads=1, progress=False)
    teacher = load_model(mpnet_dir)
    own = make_encoder(load_tokenizer(mpnet_dir), TINY_ENCODING)
    expected = predict_logits(teacher, encode_reviews(own, reviews, LABELS), own.pad_id)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The student's ids are 4 lower: fed to the teacher, they give other answers.
    student = make_encoder(load_tokenizer(tiny_bert_dir), TINY_ENCODING)
    student_ids = encode_reviews(student, reviews, LABELS)
    assert student_ids.ids[0] != encode_reviews(own, reviews, LABELS).ids[0]
    wrong = predict_logits(teacher, student_ids, student.pad_id)
    assert not np.allclose(wrong, expected, atol=1e-2)


def test_a_wide_teacher_distils_into_a_narrow_student_init(
    mpnet_dir: Path, tiny_bert_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    data = formatted(review_factory(100, seed=52), review_factory(30, seed=53))
    unlabelled = [r for r in to_reviews(review_factory(120, seed=54))]
    held = to_reviews(review_factory(60, seed=55))
    truth = teacher_logits(mpnet_dir, [r.text for r in held], TINY_ENCODING, threads=1,
                           progress=False)
    encoder = make_encoder(load_tokenizer(tiny_bert_dir), TINY_ENCODING)
    held_set = encode_reviews(encoder, held, LABELS)
    from edgesent_export.training_run import load_classifier

    before = teacher_agreement(predict_logits(make_student(
        load_classifier(tiny_bert_dir, LABELS), n_layers=2), held_set, encoder.pad_id), truth,
        temperature=2.0)  # the distillation temperature

    out = tmp_path / "student"
    result = distill(mpnet_dir, data, out, student_init=tiny_bert_dir, unlabelled=unlabelled,
                     n_layers=2, config=tiny_config(epochs=10, batch_size=16,
                                                    learning_rate=5e-3),
                     encoding=TINY_ENCODING, alpha=0.7, early_stop="kl", progress=False)
    student = load_model(result.model_dir)
    history = json.loads((out / "history.json").read_text("utf-8"))
    assert all(h["monitor"] == h["val_teacher_kl"] for h in history)
    best = json.loads((out / "result.json").read_text("utf-8"))["best_step"]
    assert best == min(history, key=lambda h: h["monitor"])["step"]  # best by KL
    assert student.config.model_type == "distilbert"
    assert student.config.dim == 32 and student.config.n_layers == 2  # the init's width
    assert load_model(mpnet_dir).config.hidden_size == 64
    # the student keeps the student init's tokenizer, not the teacher's
    assert load_tokenizer(result.model_dir).get_vocab() == load_tokenizer(
        tiny_bert_dir).get_vocab()
    after = teacher_agreement(predict_logits(student, held_set, encoder.pad_id), truth, 2.0)
    assert after["kl"] < 0.5 * before["kl"], (before, after)
    assert after["agreement"] >= 0.9
    record = json.loads((out / "result.json").read_text("utf-8"))
    assert record["teacher"] == str(mpnet_dir) and record["student_init"] == str(tiny_bert_dir)
    assert record["val_teacher"]["agreement"] >= 0.9


def test_onnx_int8_teacher_logits_agree_with_torch(
    mpnet_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    pytest.importorskip("optimum.exporters.onnx", reason=EXPORT_REASON)
    texts = review_factory(300, seed=56).texts
    cache = tmp_path / TEACHER_LOGITS_FILE
    fp32 = teacher_logits(mpnet_dir, texts, TINY_ENCODING, cache=cache, threads=1,
                          progress=False)
    int8 = teacher_logits(mpnet_dir, texts, TINY_ENCODING, source="onnx-int8", cache=cache,
                          work_dir=tmp_path / "onnx", threads=1, progress=False)
    graph = tmp_path / "onnx" / "int8" / "model.onnx"
    assert graph.is_file()
    assert not np.array_equal(int8, fp32)  # another source: not read from the cache
    close = teacher_agreement(int8, fp32)
    assert close["agreement"] >= 0.95 and close["kl"] < 0.05

    stamp = graph.stat().st_mtime_ns
    figures = compare_teacher_sources(mpnet_dir, texts, TINY_ENCODING, tmp_path / "onnx")
    print("\nteacher logits, torch against onnx-int8:", json.dumps(figures))
    assert graph.stat().st_mtime_ns == stamp  # the graph is made once per teacher
    assert figures["texts"] == 300 and figures["agreement"] == close["agreement"]
    assert figures["max_abs_diff"] == pytest.approx(float(np.abs(int8 - fp32).max()))


def test_an_mpnet_teacher_needs_a_student_init(mpnet_dir: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(InputError, match=r"'mpnet' model cannot initialise .*--student-init"):
        check_distill(mpnet_dir, DistillSettings(), 48)
    check_distill(mpnet_dir, DistillSettings(2, student_init=tiny_bert_dir), 48)
    with pytest.raises(InputError, match=r"--student-layers 5: .* has 4 layers"):
        check_distill(mpnet_dir, DistillSettings(5, student_init=tiny_bert_dir), 48)
    with pytest.raises(InputError, match=r"--student-init .*no such model directory"):
        check_distill(mpnet_dir, DistillSettings(student_init=Path("runs/none/here")), 48)
    check_distill(mpnet_dir, DistillSettings(student_init=tiny_bert_dir,
                                             teacher_logits="onnx-int8"), 48)
    with pytest.raises(InputError, match=r"onnx-int8: the teacher .* 'bert' model"):
        check_distill(tiny_bert_dir, DistillSettings(teacher_logits="onnx-int8"), 48)
    with pytest.raises(InputError, match=r"--max-length 200: .*128 positions"):
        check_distill(mpnet_dir, DistillSettings(student_init=tiny_bert_dir), 200)
    units = json.loads((tiny_bert_dir / "config.json").read_text())["intermediate_size"]
    check_distill(mpnet_dir, DistillSettings(student_init=tiny_bert_dir, ffn=units), 48)
    with pytest.raises(InputError, match=rf"--student-ffn {units + 1}: .* {units} feed-forward"):
        check_distill(mpnet_dir, DistillSettings(student_init=tiny_bert_dir, ffn=units + 1), 48)


def test_distill_command_with_a_student_init_and_onnx_logits(
    mpnet_dir: Path, tiny_bert_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    pytest.importorskip("optimum.exporters.onnx", reason=EXPORT_REASON)
    write_csv(tmp_path / "train.csv", review_factory(80, seed=57).rows(), ["text", "label"])
    fast = ["--max-length", "48", "--head-tokens", "16", "--precision", "fp32", "--threads",
            "1", "--quiet", "--seed", "0", "--epochs", "1", "--batch-size", "16"]
    common = ["distill", str(mpnet_dir), str(tmp_path / "s"), "--train",
              str(tmp_path / "train.csv"), *fast]
    result = CliRunner().invoke(main, [*common, "--layers", "2"])
    one_line_error(result, "'mpnet' model cannot initialise", "--student-init")
    result = CliRunner().invoke(main, [*common, "--layers", "2", "--student-init",
                                       str(tiny_bert_dir), "--teacher-logits", "onnx-int8",
                                       "--early-stop", "agreement", "--student-ffn", "16"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "s" / "result.json").read_text("utf-8"))
    assert record["distillation"]["teacher_logits"] == "onnx-int8"
    assert record["distillation"]["early_stop"] == "agreement"
    assert (tmp_path / "s" / "teacher-onnx" / "int8" / "model.onnx").is_file()
    student = load_model(tmp_path / "s" / "best")
    assert student.config.dim == 32 and student.config.hidden_dim == 16 == record["ffn"]


def test_teacher_logits_resume_at_the_last_saved_chunk(
    mpnet_dir: Path, review_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgesent_export.distill as distill_module
    from edgesent_export import logits as logits_module

    texts = review_factory(50, seed=58).texts
    whole = teacher_logits(mpnet_dir, texts, TINY_ENCODING, threads=1, progress=False)
    monkeypatch.setattr(distill_module, "LOGIT_CHUNK", 20)
    real, calls = logits_module.torch_logits, []

    def dies_on_the_third_chunk(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(len(args[2]))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the session ends
        return real(*args, **kwargs)

    monkeypatch.setattr(logits_module, "torch_logits", dies_on_the_third_chunk)
    cache = tmp_path / TEACHER_LOGITS_FILE
    with pytest.raises(KeyboardInterrupt):
        teacher_logits(mpnet_dir, texts, TINY_ENCODING, cache=cache, threads=1, progress=False)
    assert len(list((tmp_path / "teacher_logits.parts").glob("*.npy"))) == 2
    assert not cache.exists()
    calls.clear()

    def counted(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(logits_module, "torch_logits", counted)
    resumed = teacher_logits(mpnet_dir, texts, TINY_ENCODING, cache=cache, threads=1,
                             progress=False)
    np.testing.assert_allclose(resumed, whole, atol=1e-5)
    assert calls == [10]  # only the chunk the kill lost: texts 40..49
    assert cache.exists() and not (tmp_path / "teacher_logits.parts").exists()


def test_a_teacher_that_was_never_fine_tuned_is_refused(tmp_path: Path,
                                                        review_factory: Any) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "config.json").write_text(json.dumps(
        {"model_type": "mpnet", "id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    data = formatted(review_factory(20, seed=59))
    with pytest.raises(InputError, match=r"names no labels .* fine-tune it first"):
        distill(raw, data, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
