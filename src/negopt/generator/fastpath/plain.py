"""A plain copy of a generator's model for the fast paths that cannot run a peft adapter as it is: int8
quantization (``optimize("int8")``) and CTranslate2's converter.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.optimize()``.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["plain_copy"]


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of ``model`` in eval mode with any peft adapter merged into its weights, at its scales; inside
    ``disable_adapter()`` the adapter is dropped instead, since the model computes without it. The original is left
    as it was: this is always a copy (CTranslate2's converter holds views of the weights and, quantizing, changes some
    in place; int8 quantization replaces the linear layers)."""
    copied = copy.deepcopy(model)
    if hasattr(copied, "peft_config"):
        copied = copied.unload() if getattr(model, "_adapters_disabled", False) else copied.merge_and_unload()
    return copied.float().eval()
