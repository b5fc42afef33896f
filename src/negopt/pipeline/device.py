"""``DeviceMixin``: :class:`~negopt.NegOptPipeline`'s ``to()``, which moves the wrapped pipeline and the generator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DeviceMixin"]


class DeviceMixin:
    """``to()`` for a wrapper that holds a diffusers pipeline as ``pipeline`` and a ``negative_prompt_generator``."""

    def to(self, *args: Any, **kwargs: Any) -> Self:
        """Move the wrapped pipeline, like ``DiffusionPipeline.to``, and the generator when it is a model.

        The generator (anything with a ``.to``, such as a :class:`~negopt.NegOptGenerator`) follows the *device* only:
        a dtype given here is the diffusion model's, and a small language model is better kept in float32.

        Returns:
            This wrapper (not the bare pipeline), so ``pipe = NegOptPipeline(sd).to("cuda")`` stays wrapped.
        """
        moved = self.pipeline.to(*args, **kwargs)
        if moved is not None:
            object.__setattr__(self, "pipeline", moved)
        device = kwargs.get("device", kwargs.get("torch_device"))
        for arg in args:
            if isinstance(arg, str) or type(arg).__name__ == "device":
                device = arg
        to = getattr(self.negative_prompt_generator, "to", None)
        if device is not None and callable(to):
            moved_generator = to(device)
            if moved_generator is not None:
                self.negative_prompt_generator = moved_generator
        return self
