"""The model shipped inside the package: it verifies, loads light, and reads reviews right.

The reviews below were written for this test (not taken from any data set); each is
unmistakable to a person, so a shipped model that gets one wrong is a broken model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgesent import Classifier, load_bundle
from edgesent.models import DEFAULT_MODEL

POSITIVE_REVIEWS = [
    "Absolutely love this kettle. It boils fast, looks great and the handle stays cool.",
    "Best headphones I have ever owned, crystal clear sound and the battery lasts for days.",
    "Fits perfectly, the fabric is soft and it washed well. Would happily buy again.",
    "Five stars. Setup took two minutes and it has worked flawlessly every single day.",
    "The kids adore this game, hours of fun and well worth the price.",
]
NEGATIVE_REVIEWS = [
    "The strap broke after a week and customer service never answered my emails.",
    "Total waste of money. It stopped charging on day three and the refund took a month.",
    "Arrived cracked, smelled of burnt plastic, and the replacement was just as bad.",
    "Terrible app, crashes every time I open it and deletes my saved progress.",
    "Do not buy. Cheap flimsy material, the zipper came off the first time I used it.",
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    if not (DEFAULT_MODEL / "edgesent.json").exists():
        pytest.fail(f"the package ships no default model at {DEFAULT_MODEL}")
    return Classifier.load(threads=1)


def test_shipped_bundle_verifies_and_describes_itself() -> None:
    bundle = load_bundle(DEFAULT_MODEL)
    manifest = bundle.manifest
    assert bundle.labels == ["negative", "positive"]
    assert manifest["model"]["precision"] == "int8"
    assert bundle.size_bytes <= 15 * 1024 * 1024
    assert 0.05 < bundle.temperature < 20
    provenance = manifest["provenance"]
    for key in ("base_model", "data", "command", "edgesent_version", "created"):
        assert provenance.get(key), f"provenance lacks {key}"
    assert manifest["metrics"], "the manifest carries no build-time metrics"
    recorded = json.dumps(provenance)
    for local in ("site-packages", "/work/", "/home/", "/root/", ".venv"):
        assert local not in recorded, f"provenance holds a build-machine path ({local})"


@pytest.mark.parametrize("text", POSITIVE_REVIEWS)
def test_unmistakable_positive_reviews(classifier: Classifier, text: str) -> None:
    prediction = classifier.predict(text)
    assert prediction.label == "positive", prediction


@pytest.mark.parametrize("text", NEGATIVE_REVIEWS)
def test_unmistakable_negative_reviews(classifier: Classifier, text: str) -> None:
    prediction = classifier.predict(text)
    assert prediction.label == "negative", prediction


def test_default_model_loads_without_the_build_half() -> None:
    """`Classifier.load()` and `edgesent predict` work with torch & co. blocked."""
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {{'torch', 'transformers', 'optimum'}}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from edgesent.cli import main
sys.argv = ['edgesent', 'predict', '--format', 'json', {NEGATIVE_REVIEWS[0]!r}]
main()
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["label"] == "negative"
