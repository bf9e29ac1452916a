"""Temperature scaling (numpy only: runs without the [export] extra)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesent.metrics import softmax
from edgesent_export.calibration import calibration_report, fit_temperature, nll


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true calibrated temperature is 3: labels are drawn from
    softmax(logits / 3), so softmax(logits) is far too sure of itself."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=6.0, size=(n, 2))
    probs = softmax(logits, temperature=3.0)
    labels = (rng.random(n) < probs[:, 1]).astype(np.int64)
    return logits, labels


def test_recovers_temperature_and_lowers_nll_and_ece():
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert 2.5 < temperature < 3.6
    report = calibration_report(logits, labels, temperature)
    assert report["nll_after"] < report["nll_before"] - 0.05
    assert report["ece_after"] < report["ece_before"] / 2
    # predictions are unchanged by a positive temperature
    assert (softmax(logits, temperature).argmax(1) == logits.argmax(1)).all()


def test_fitted_temperature_is_the_minimum():
    logits, labels = _overconfident(500, seed=1)
    best = fit_temperature(logits, labels)
    at_best = nll(logits, labels, best)
    for factor in (0.9, 0.99, 1.01, 1.1):
        assert at_best <= nll(logits, labels, best * factor) + 1e-12


def test_underconfident_logits_get_temperature_below_one():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=600)
    logits = rng.normal(scale=0.1, size=(600, 3))
    logits[np.arange(600), labels] += 0.5  # right but timid
    assert fit_temperature(logits, labels) < 1.0


def test_separable_data_hits_lower_bound():
    logits = np.array([[3.0, -3.0], [-3.0, 3.0]])
    assert math.isclose(fit_temperature(logits, [0, 1], bounds=(0.1, 10.0)), 0.1, rel_tol=1e-3)


def test_nll_matches_definition():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    labels = [1, 0]
    probs = softmax(logits, temperature=2.0)
    expected = -np.mean(np.log(probs[[0, 1], labels]))
    assert math.isclose(nll(logits, labels, 2.0), expected, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((3,)), [0, 1, 0], "shape"),
        (np.zeros((2, 2)), [0], "labels for"),
        (np.array([[np.nan, 0.0]]), [0], "NaN"),
        (np.zeros((1, 2)), [2], "labels must lie"),
        (np.zeros((0, 2)), [], "no examples"),
    ],
)
def test_rejects_bad_input(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)
