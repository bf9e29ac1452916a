"""edgesent's build half: format data, fine-tune, distil, export, quantize, gate, bundle.

Installed as the import package ``edgesent_export``; needs the ``[export]`` extra
(torch, transformers, optimum-onnx). Heavy libraries are imported inside the functions
that use them, so importing this package stays cheap.
"""

EXTRA_HINT = 'this needs the build half: pip install "edgesent[export]" torch==2.13.0'
# The teacher's base encoder when none is given (the CLI's --model default).
DEFAULT_BASE_MODEL = "distilbert-base-uncased"
