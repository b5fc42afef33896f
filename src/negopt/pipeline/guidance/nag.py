"""Normalized Attention Guidance (NAG): the maths, and the state a call's attention processors share.

NAG (Chen et al., 2025, "Normalized Attention Guidance: Universal Negative Guidance for Diffusion Models",
arXiv:2505.21179; reference code ChenDarYen/Normalized-Attention-Guidance) applies a negative prompt inside
attention instead of in the model's output. In each layer where the image tokens read the text, they attend once to
the prompt's tokens and once to the negative's, giving ``Z+`` and ``Z-`` (one feature vector per image token); then,
per token:

1. extrapolate away from the negative: ``Z~ = s * Z+ - (s - 1) * Z-`` (``s = nag_scale``);
2. normalise: where ``||Z~||_1 / ||Z+||_1 > tau``, scale ``Z~`` down so that the ratio is ``tau`` (``nag_tau``);
3. blend: the layer goes on with ``alpha * Z~ + (1 - alpha) * Z+`` (``alpha = nag_alpha``).

With ``s = 1``, ``Z~ = Z+`` and the layer is unchanged. The norm is L1, as in the paper and the reference code's
UNet, SD3 and Wan processors (its Flux processor uses L2; the authors report L1 as slightly better and cheaper, in
the reference repository's issue 5).

Nothing here imports torch at module level; :func:`nag_combine` takes tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["nag_combine", "NAGState"]


def nag_combine(z_pos: torch.Tensor, z_neg: torch.Tensor, scale: float, tau: float, alpha: float) -> torch.Tensor:
    """Combine the attention features of the prompt (``z_pos``) and of the negative (``z_neg``) the NAG way.

    Written so that ``scale=1`` returns ``z_pos`` bit for bit (``z_pos + 0 * (z_pos - z_neg)``, a ratio of exactly 1,
    a blend of ``z_pos + alpha * 0``), which is what lets a NAG call at ``nag_scale=1`` reproduce the bare pipeline.
    The norms are summed in float32 whatever the features' dtype. A token whose ``z_pos`` is all zeros has no
    direction to keep: its guided features are scaled to zero (the limit of the rescale), never NaN.

    Args:
        z_pos: Features of the image tokens attending to the prompt, ``(..., features)``.
        z_neg: The same tokens attending to the negative, the same shape.
        scale: ``s`` (``nag_scale``), at least 1.
        tau: ``tau`` (``nag_tau``), the largest ratio of L1 norms ``||Z~|| / ||Z+||`` kept, at least 1.
        alpha: ``alpha`` (``nag_alpha``), the weight of the guided features in the blend, in [0, 1].

    Returns:
        ``alpha * Z~ + (1 - alpha) * Z+``, the shape and dtype of ``z_pos``.

    Example:
        >>> import torch
        >>> nag_combine(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]]), scale=2.0, tau=2.0, alpha=0.5)
        tensor([[ 1.3000, -1.7000]])
    """
    import torch

    guided = z_pos + (scale - 1) * (z_pos - z_neg)
    norm_pos = z_pos.abs().sum(dim=-1, keepdim=True, dtype=torch.float32)
    norm_guided = guided.abs().sum(dim=-1, keepdim=True, dtype=torch.float32)
    ratio = norm_guided / norm_pos
    # NaN (0/0) compares False and keeps the factor 1; x/0 = inf gives tau/inf = 0.
    factor = torch.where(ratio > tau, tau / ratio, torch.ones_like(ratio))
    guided = guided * factor.to(guided.dtype)
    return z_pos + alpha * (guided - z_pos)


@dataclass
class NAGState:
    """What the attention processors of one NAG call share: the knobs, where the negative's tokens are, and whether
    the current step is guided.

    The call sends the denoiser the prompt's text tokens followed by the negative's, in one sequence
    (``positive_length`` then ``negative_length`` tokens); each processor splits them there.

    Attributes:
        scale: ``nag_scale``.
        tau: ``nag_tau``.
        alpha: ``nag_alpha``.
        positive_length: Text tokens of the prompt.
        negative_length: Text tokens of the negative.
        active: Whether the current step is guided; False after ``nag_end``, when the image tokens attend to the
            prompt only (the negative's tokens still ride along, unread).
    """

    scale: float
    tau: float
    alpha: float
    positive_length: int
    negative_length: int
    active: bool = True

    @property
    def text_length(self) -> int:
        """Text tokens in all: the prompt's and the negative's."""
        return self.positive_length + self.negative_length

    def combine(self, z_pos: torch.Tensor, z_neg: torch.Tensor) -> torch.Tensor:
        """:func:`nag_combine` with this call's knobs."""
        return nag_combine(z_pos, z_neg, self.scale, self.tau, self.alpha)
