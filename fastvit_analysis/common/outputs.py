"""Model outputs: the one rule by which every analysis that needs logits finds them.

A model's forward may return a tensor, a dict, a tuple or a ``ModelOutput``-like object. The logits
are: the output itself if it is a tensor, else its ``.logits`` attribute, else its ``["logits"]``
entry, else its first element (a tuple or list). ``output_fn=`` overrides the rule (any callable
output -> logits tensor); anything else is a TypeError naming what was returned.

Example:
    >>> import torch
    >>> z = torch.zeros(2, 3)
    >>> model_logits({"logits": z, "aux": 1}) is z, model_logits((z, None)) is z
    (True, True)
    >>> model_logits({"probs": z}, output_fn=lambda o: o["probs"]) is z
    True
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from torch import Tensor

__all__ = ["OutputFn", "model_logits", "check_output_fn", "LogitsLoss"]

OutputFn = Callable[[Any], Tensor]


def check_output_fn(output_fn: Any) -> OutputFn | None:
    """`output_fn` itself when it is None or callable, else a TypeError naming the argument."""
    if output_fn is not None and not callable(output_fn):
        raise TypeError(f"output_fn: expected a callable model output -> logits tensor, or None, "
                        f"got {type(output_fn).__name__}")
    return output_fn


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"{type(out).__name__} with keys {sorted(map(str, out.keys()))}"
    if isinstance(out, (tuple, list)):
        return f"{type(out).__name__} of {len(out)} ({', '.join(type(o).__name__ for o in out[:4])})"
    return type(out).__name__


def model_logits(out: Any, output_fn: OutputFn | None = None) -> Tensor:
    """The logits tensor in a model's output `out` (see the module rule), or `output_fn(out)`."""
    if output_fn is not None:
        logits = output_fn(out)
        if not isinstance(logits, Tensor):
            raise TypeError(f"output_fn: must return the logits tensor, returned {type(logits).__name__}")
        return logits
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, Mapping):
        logits = out.get("logits")
    if logits is None and isinstance(out, (tuple, list)) and len(out) > 0:
        logits = out[0]
    if isinstance(logits, Tensor):
        return logits
    raise TypeError(f"model output: expected the logits as a tensor, an object with .logits, a mapping with "
                    f"'logits' or a tuple whose first element is the logits; got {_describe(out)}. "
                    f"Pass output_fn= (model output -> logits tensor) to pick them")


class LogitsLoss:
    """`loss_fn(model_logits(outputs, output_fn), targets)`: a loss that accepts any model output.

    Attributes of the wrapped loss (``reduction``, ``__qualname__``, …) read through, so code that
    inspects the loss sees the user's.

    Example:
        >>> import torch
        >>> loss = LogitsLoss(torch.nn.CrossEntropyLoss(reduction="sum"))
        >>> loss.reduction, float(loss({"logits": torch.zeros(2, 2)}, torch.tensor([0, 1]))) > 0
        ('sum', True)
    """

    def __init__(self, loss_fn: Callable[[Tensor, Any], Tensor], output_fn: OutputFn | None = None):
        self.loss_fn, self.output_fn = loss_fn, check_output_fn(output_fn)

    def __call__(self, outputs: Any, targets: Any) -> Tensor:
        return self.loss_fn(model_logits(outputs, self.output_fn), targets)

    def __getattr__(self, name: str) -> Any:
        if name in ("loss_fn", "output_fn"):  # not yet set (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loss_fn, name)
