"""Model bundles that ship inside the package (see ``edgesent.models.DEFAULT_MODEL``)."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_NAME = "edgesent-reviews-en"
DEFAULT_MODEL = MODELS_DIR / DEFAULT_MODEL_NAME
