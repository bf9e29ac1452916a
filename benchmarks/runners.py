"""How each kind of system classifies texts, inside a worker process.

Every runner turns texts into label names (``"negative"``/``"positive"``) and imports its
libraries only when built, so a worker process holds just what its system needs.

>>> runner = load_runner({"kind": "vader", "labels": ["negative", "positive"]}, threads=1)
>>> runner.predict(["I love it, great value!"], batch_size=32)  # doctest: +SKIP
['positive']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

LABEL_ALIASES = {"neg": "negative", "negative": "negative", "pos": "positive",
                 "positive": "positive"}


class Runner(Protocol):
    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]: ...

    def predict_one(self, text: str) -> str: ...

    def token_count(self, text: str) -> int | None: ...


class EdgesentRunner:
    """The public API: ``edgesent.Classifier``."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        from edgesent import Classifier

        self.clf = Classifier.load(spec["model"], threads=threads)

    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]:
        return [str(p.label) for p in self.clf.predict(list(texts), batch_size=batch_size)]

    def predict_one(self, text: str) -> str:
        return str(self.clf.predict(text).label)

    def token_count(self, text: str) -> int | None:
        return len(self.clf.encoder.token_ids([text])[0])


class OnnxRunner:
    """An ONNX graph run the way the Classifier runs it: same session options, same
    encoder (head+tail truncation), length-sorted batches with dynamic padding."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from edgesent.bundle import model_feed
        from edgesent.classifier import session_options
        from edgesent.tokenization import EncodingSettings, TextEncoder

        self.session = ort.InferenceSession(spec["model"], sess_options=session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.encoder = TextEncoder(Tokenizer.from_file(spec["tokenizer"]),
                                   EncodingSettings(**spec["encoding"]))
        self.labels = list(spec["labels"])
        self._feed = model_feed

    def _logits(self, seqs: list[list[int]]) -> Any:
        ids, mask = self.encoder.pad(seqs)
        return self.session.run(["logits"], self._feed(self.session, ids, mask))[0]

    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]:
        seqs = self.encoder.token_ids(list(texts))
        order = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
        out = [""] * len(seqs)
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            logits = self._logits([seqs[k] for k in batch])
            for k, row in zip(batch, logits.argmax(axis=1), strict=True):
                out[k] = self.labels[int(row)]
        return out

    def predict_one(self, text: str) -> str:
        return self.predict([text], 1)[0]

    def token_count(self, text: str) -> int | None:
        return len(self.encoder.token_ids([text])[0])


class PipelineRunner:
    """``transformers.pipeline("text-classification")`` on PyTorch, or on Optimum's
    ``ORTModelForSequenceClassification`` (``kind == "optimum"``)."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        import torch
        from transformers import AutoConfig, AutoTokenizer

        torch.set_num_threads(threads)
        model_dir = spec["model"]
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(spec.get("tokenizer") or model_dir,
                                                       local_files_only=True)
        if spec["kind"] == "optimum":
            import onnxruntime as ort
            from optimum.onnxruntime import ORTModelForSequenceClassification
            from optimum.onnxruntime import pipeline as ort_pipeline

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            model = ORTModelForSequenceClassification.from_pretrained(
                model_dir, session_options=options, provider="CPUExecutionProvider",
                local_files_only=True)
            self.pipe = ort_pipeline("text-classification", model=model, tokenizer=self.tokenizer)
        else:
            from transformers import pipeline

            self.pipe = pipeline("text-classification", model=model_dir,
                                 tokenizer=self.tokenizer, device="cpu",
                                 dtype=torch.float32)
        labels = list(spec["labels"])
        self.names = {}
        for index, name in config.id2label.items():
            alias = LABEL_ALIASES.get(str(name).lower())
            self.names[str(name)] = alias or labels[int(index)]
        self.max_length = int(spec.get("max_length", 256))

    def _call(self, texts: Any, batch_size: int) -> Any:
        return self.pipe(texts, batch_size=batch_size, truncation=True, max_length=self.max_length)

    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]:
        return [self.names[out["label"]] for out in self._call(list(texts), batch_size)]

    def predict_one(self, text: str) -> str:
        return self.names[self._call(text, 1)[0]["label"]]

    def token_count(self, text: str) -> int | None:
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        return len(ids)


class TfidfRunner:
    """TF-IDF + logistic regression, loaded from plain JSON/NumPy files (no pickle)."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        from benchmarks.baselines import load_tfidf

        self.model = load_tfidf(Path(spec["model"]))

    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]:
        return self.model.predict(list(texts))

    def predict_one(self, text: str) -> str:
        return self.model.predict([text])[0]

    def token_count(self, text: str) -> int | None:
        return None


class VaderRunner:
    """VADER's rule-based sentiment; compound >= 0 counts as positive."""

    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def predict_one(self, text: str) -> str:
        compound = self.analyzer.polarity_scores(text)["compound"]
        return "positive" if compound >= 0 else "negative"

    def predict(self, texts: Sequence[str], batch_size: int) -> list[str]:
        return [self.predict_one(text) for text in texts]

    def token_count(self, text: str) -> int | None:
        return None


RUNNERS: dict[str, type] = {
    "edgesent": EdgesentRunner,
    "onnx": OnnxRunner,
    "pipeline": PipelineRunner,
    "optimum": PipelineRunner,
    "tfidf": TfidfRunner,
    "vader": VaderRunner,
}


def load_runner(spec: dict[str, Any], threads: int) -> Runner:
    """The runner of ``spec["kind"]`` on ``threads`` threads."""
    try:
        factory = RUNNERS[spec["kind"]]
    except KeyError:
        raise ValueError(f"unknown system kind {spec.get('kind')!r}") from None
    return factory(spec, threads)


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps every thread pool of a worker (OpenMP, MKL, Rayon)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "RAYON_NUM_THREADS"):
        env[name] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env

