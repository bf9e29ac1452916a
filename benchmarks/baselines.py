"""The classic baseline: TF-IDF + logistic regression, trained on the build's training data.

Saved as ``vocabulary.json`` + ``tfidf.json`` (settings) + ``weights.npz`` (idf, coefficients,
intercept): plain data, loadable without pickle.

>>> model = train_tfidf(["great value", "broke fast"], ["positive", "negative"])  # doctest: +SKIP
>>> save_tfidf(model, Path("runs/bench/tfidf"))  # doctest: +SKIP
>>> load_tfidf(Path("runs/bench/tfidf")).predict(["great"])  # doctest: +SKIP
['positive']
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

VECTORIZER = {"ngram_range": [1, 2], "min_df": 2, "max_df": 0.9, "sublinear_tf": True,
              "max_features": 200_000, "lowercase": True, "strip_accents": "unicode"}
REGULARIZATION_C = 4.0
FILES = ("vocabulary.json", "tfidf.json", "weights.npz")


@dataclass
class TfidfModel:
    """A fitted vectorizer and a linear scorer over its features."""

    vectorizer: Any
    coef: np.ndarray  # (n_classes or 1, n_features)
    intercept: np.ndarray
    classes: list[str]

    def predict(self, texts: Sequence[str]) -> list[str]:
        features = self.vectorizer.transform(list(texts))
        scores = np.asarray(features @ self.coef.T) + self.intercept
        # Binary logistic regression keeps one score column, for classes[1].
        picks = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return [self.classes[int(k)] for k in picks]


def train_tfidf(texts: Sequence[str], labels: Sequence[str], seed: int = 13) -> TfidfModel:
    """Fit TF-IDF (word 1-2 grams) + logistic regression (C=4) on ``texts``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    settings = {**VECTORIZER, "ngram_range": tuple(VECTORIZER["ngram_range"])}
    if len(texts) < 50:  # tiny training sets (tests): keep every term
        settings.update(min_df=1, max_df=1.0)
    vectorizer = TfidfVectorizer(**settings)
    features = vectorizer.fit_transform(list(texts))
    classifier = LogisticRegression(C=REGULARIZATION_C, max_iter=2000, random_state=seed)
    classifier.fit(features, list(labels))
    logger.info("TF-IDF + LR: %d training texts, %d features", len(texts), features.shape[1])
    return TfidfModel(vectorizer, classifier.coef_.astype(np.float32),
                      classifier.intercept_.astype(np.float32),
                      [str(c) for c in classifier.classes_])


def save_tfidf(model: TfidfModel, out_dir: Path) -> list[Path]:
    """Write the model's three files into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vocabulary = sorted(model.vectorizer.vocabulary_, key=model.vectorizer.vocabulary_.get)
    settings = {key: getattr(model.vectorizer, key) for key in VECTORIZER if key != "max_features"}
    settings["ngram_range"] = list(settings["ngram_range"])
    settings["classes"] = model.classes
    (out_dir / FILES[0]).write_text(json.dumps(vocabulary, ensure_ascii=False), "utf-8")
    (out_dir / FILES[1]).write_text(json.dumps(settings, indent=2), "utf-8")
    np.savez(out_dir / FILES[2], idf=model.vectorizer.idf_.astype(np.float32),
             coef=model.coef, intercept=model.intercept)
    return [out_dir / name for name in FILES]


def load_tfidf(model_dir: Path) -> TfidfModel:
    """Rebuild a saved model: the vectorizer from its vocabulary and idf weights."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocabulary = json.loads((model_dir / FILES[0]).read_text("utf-8"))
    settings = json.loads((model_dir / FILES[1]).read_text("utf-8"))
    classes = settings.pop("classes")
    settings.pop("min_df", None)
    settings.pop("max_df", None)
    settings["ngram_range"] = tuple(settings["ngram_range"])
    vectorizer = TfidfVectorizer(vocabulary=vocabulary, **settings)
    with np.load(model_dir / FILES[2], allow_pickle=False) as weights:
        vectorizer.idf_ = weights["idf"].astype(np.float64)
        coef, intercept = weights["coef"], weights["intercept"]
    return TfidfModel(vectorizer, coef, intercept, list(classes))
