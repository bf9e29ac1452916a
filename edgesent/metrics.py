"""Classification metrics in plain numpy, shared by both halves and the benchmarks.

>>> report = classification_report([0, 1, 1], [0, 1, 0], labels=["negative", "positive"])
>>> round(report["accuracy"], 3)
0.667
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                     n_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2).tolist()
    [[1, 0], [1, 1]]
    """
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true_arr = np.asarray(y_true, dtype=np.int64)
    y_pred_arr = np.asarray(y_pred, dtype=np.int64)
    if y_true_arr.shape != y_pred_arr.shape:
        raise ValueError("y_true and y_pred differ in length")
    matrix = confusion_matrix(y_true_arr, y_pred_arr, len(labels))
    true_pos = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    total = len(y_true_arr)
    return {
        "n": int(total),
        "accuracy": float(true_pos.sum() / total) if total else float("nan"),
        "macro_f1": float(f1.mean()) if len(labels) else float("nan"),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }


def accuracy_by_group(groups: Sequence[str | None], y_true: Sequence[int] | np.ndarray,
                      y_pred: Sequence[int] | np.ndarray) -> dict[str, dict[str, Any]]:
    """Accuracy and row count per group (a review's domain), sorted by name; rows whose
    group is None are left out.

    >>> accuracy_by_group(["books", "books", None, "dvd"], [1, 0, 1, 1], [1, 1, 0, 1])
    {'books': {'accuracy': 0.5, 'n': 2}, 'dvd': {'accuracy': 1.0, 'n': 1}}
    """
    if not len(groups) == len(y_true) == len(y_pred):
        raise ValueError("groups, y_true and y_pred differ in length")
    hits: dict[str, list[bool]] = {}
    for group, truth, guess in zip(groups, y_true, y_pred, strict=True):
        if group is not None:
            hits.setdefault(group, []).append(int(truth) == int(guess))
    return {group: {"accuracy": float(np.mean(h)), "n": len(h)}
            for group, h in sorted(hits.items())}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, stable for large logits.

    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def expected_calibration_error(
    probs: np.ndarray, y_true: Sequence[int], n_bins: int = 15
) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins.

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.2, 0.8]]), [0, 1]) < 0.2
    True
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(y_true, dtype=np.int64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
