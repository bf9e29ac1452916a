"""The one graph shape edgesent serves: ``input_ids``, ``attention_mask`` → ``logits``.

Both halves check graphs against this contract: the build half after export and
quantization, the run half when a bundle loads.

>>> REQUIRED_INPUTS, OUTPUT_NAME
(('input_ids', 'attention_mask'), 'logits')
"""

from __future__ import annotations

from typing import Any

import numpy as np

REQUIRED_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)  # BERT-style graphs: fed zeros
OUTPUT_NAME = "logits"
INT_TYPES: dict[str, type[np.integer[Any]]] = {"tensor(int64)": np.int64,
                                                "tensor(int32)": np.int32}


def signature_problems(session: Any) -> list[str]:
    """What keeps an ONNX Runtime session from matching the contract (empty when it does).

    Returns problems rather than raising, so each caller words the error for its context.
    """
    inputs = {i.name: i for i in session.get_inputs()}
    problems = []
    if missing := [n for n in REQUIRED_INPUTS if n not in inputs]:
        problems.append(f"graph inputs are {sorted(inputs)}; missing {missing}")
    if extra := sorted(set(inputs) - {*REQUIRED_INPUTS, *OPTIONAL_INPUTS}):
        problems.append(f"graph has inputs edgesent cannot feed: {extra}")
    for graph_input in inputs.values():
        if graph_input.type not in INT_TYPES:
            problems.append(f"input {graph_input.name} is {graph_input.type}, expected int64")
    outputs = {o.name: o for o in session.get_outputs()}
    if OUTPUT_NAME not in outputs:
        problems.append(f"graph has no output named {OUTPUT_NAME!r} (it has {sorted(outputs)})")
    elif len(outputs[OUTPUT_NAME].shape) != 2:
        problems.append(f"output logits must be 2-D (batch, labels), not shape "
                        f"{outputs[OUTPUT_NAME].shape}")
    return problems


def output_width(session: Any) -> int | None:
    """The static number of logits per text, or None when the graph leaves it dynamic."""
    width = next(o.shape[1] for o in session.get_outputs() if o.name == OUTPUT_NAME)
    return width if isinstance(width, int) else None


def feed(session: Any, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The input dict for ``session.run``, with the dtypes the graph declares.

    >>> class Input:
    ...     def __init__(self, name): self.name, self.type = name, "tensor(int32)"
    >>> class Session:
    ...     def get_inputs(self): return [Input("input_ids"), Input("attention_mask")]
    >>> ids = np.array([[101, 7, 102]])
    >>> {k: v.dtype.name for k, v in feed(Session(), ids, ids > 0).items()}
    {'input_ids': 'int32', 'attention_mask': 'int32'}
    """
    inputs: dict[str, np.ndarray] = {}
    for graph_input in session.get_inputs():
        dtype = INT_TYPES.get(graph_input.type, np.int64)
        if graph_input.name == "input_ids":
            source = ids
        elif graph_input.name == "attention_mask":
            source = mask
        else:
            source = np.zeros_like(ids)
        inputs[graph_input.name] = np.asarray(source).astype(dtype, copy=False)
    return inputs
