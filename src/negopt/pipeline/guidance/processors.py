"""The attention processors of a NAG call, one per kind of attention that reads text.

Each call sends the denoiser one text sequence: the prompt's tokens, then the negative's (see
:class:`~negopt.pipeline.guidance.nag.NAGState`). Each processor splits it there, lets the image tokens attend to
each part as the processor it replaces would (same projections, norms, rotary embedding and attention backend), and
combines the two results with :func:`~negopt.pipeline.guidance.nag.nag_combine`. The prompt's branch repeats the
replaced processor's operations in its order, so at ``nag_scale=1`` the output is the bare model's, bit for bit on
a CPU.

- :class:`NAGCrossAttnProcessor`: UNet cross-attention (``attn2`` of SD 1.x/2.x and SDXL), replacing
  ``AttnProcessor2_0``; the image queries attend to the prompt's keys and to the negative's.
- :class:`NAGFluxAttnProcessor`: Flux joint attention, replacing ``FluxAttnProcessor``, in the double-stream blocks
  (text and image streams apart) and the single-stream ones (one ``[text; image]`` sequence). Two attentions over
  ``[prompt; image]`` and ``[negative; image]``: the prompt's text tokens come from the first, the negative's from
  the second, so the negative's stream travels through every block beside the prompt's; the image tokens get the
  NAG combination of the two.
- :class:`NAGJointAttnProcessor`: the same for SD3 / SD3.5 (``JointAttnProcessor2_0``; image tokens first).
- :class:`NAGWanAttnProcessor`: Wan 2.x text cross-attention (``attn2``), replacing ``WanAttnProcessor``.

Where the reference code doubles the image stream for the negative branch of the Flux single-stream blocks (and
modulates the negative's text with the negative's pooled embedding), here there is one image stream, shared by both
branches, and one modulation, the prompt's: the image tokens read the negative exactly as in the double-stream
blocks, and the step costs much less.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from negopt.pipeline.guidance.nag import NAGState

if TYPE_CHECKING:
    import torch

__all__ = ["NAGCrossAttnProcessor", "NAGFluxAttnProcessor", "NAGJointAttnProcessor", "NAGWanAttnProcessor"]


def _split(context: torch.Tensor, state: NAGState) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's and the negative's text tokens of ``context`` (``batch, tokens, features``), each contiguous."""
    if context.shape[1] != state.text_length:
        raise ValueError(
            f"NAG expected {state.text_length} text tokens ({state.positive_length} of the prompt, "
            f"{state.negative_length} of the negative) in this attention layer, got {context.shape[1]}. Another "
            "change to the denoiser's inputs (an adapter that adds tokens?) does not combine with "
            "negative_guidance='nag'; pass negative_guidance='cfg'."
        )
    return context[:, : state.positive_length].contiguous(), context[:, state.positive_length :].contiguous()


def _no_mask(attention_mask: Any, name: str) -> None:
    if attention_mask is not None:
        raise ValueError(
            f"NAG's {name} does not take an attention mask, and this call passed one; pass negative_guidance='cfg'."
        )


class NAGCrossAttnProcessor:
    """NAG in a UNet cross-attention layer (``Attention`` with ``AttnProcessor2_0``).

    Args:
        state: The call's shared state.
        original: The processor it replaces (called for self-attention, which has no text).
    """

    def __init__(self, state: NAGState, original: Any):
        self.state = state
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        state = self.state
        positive, negative = _split(encoder_hidden_states, state)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        masks = (None, None)
        if attention_mask is not None:  # a mask over the text tokens: split it like them
            masks = (attention_mask[..., : state.positive_length], attention_mask[..., state.positive_length :])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        z = self._attend(attn, query, positive, masks[0])
        if state.active:
            z = state.combine(z, self._attend(attn, query, negative, masks[1]))
        hidden_states = attn.to_out[0](z)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    @staticmethod
    def _attend(attn: Any, query: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``AttnProcessor2_0``'s attention of ``query`` over ``context``, before the output projection."""
        import torch.nn.functional as F

        batch_size, sequence_length, _ = context.shape
        if mask is not None:
            mask = attn.prepare_attention_mask(mask, sequence_length, batch_size)
            mask = mask.view(batch_size, attn.heads, -1, mask.shape[-1])
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)
        value = attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        q = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        return out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(q.dtype)


class NAGFluxAttnProcessor:
    """NAG in Flux's attention (``FluxAttention`` with ``FluxAttnProcessor``), double- and single-stream blocks.

    Args:
        state: The call's shared state.
        original: The processor it replaces; its attention backend is used.
    """

    def __init__(self, state: NAGState, original: Any):
        self.state = state
        self.original = original
        self._attention_backend = getattr(original, "_attention_backend", None)
        self._parallel_config = getattr(original, "_parallel_config", None)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Any:
        import torch

        _no_mask(attention_mask, "Flux processor")
        state = self.state
        p, n, t = state.positive_length, state.negative_length, state.text_length
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = value.unflatten(-1, (-1, attn.head_dim))
        double = encoder_hidden_states is not None and attn.added_kv_proj_dim is not None
        if double:  # a double-stream block: the text is its own stream
            if encoder_hidden_states.shape[1] != t:
                _split(encoder_hidden_states, state)  # raises the error
            if getattr(attn, "fused_projections", False):
                text_q, text_k, text_v = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
            else:
                text_q = attn.add_q_proj(encoder_hidden_states)
                text_k = attn.add_k_proj(encoder_hidden_states)
                text_v = attn.add_v_proj(encoder_hidden_states)
            text = (
                attn.norm_added_q(text_q.unflatten(-1, (-1, attn.head_dim))),
                attn.norm_added_k(text_k.unflatten(-1, (-1, attn.head_dim))),
                text_v.unflatten(-1, (-1, attn.head_dim)),
            )
            image = (query, key, value)
        else:  # a single-stream block: one sequence, the text first
            text = (query[:, :t], key[:, :t], value[:, :t])
            image = (query[:, t:], key[:, t:], value[:, t:])
        z_pos = self._attend(text, image, slice(0, p), image_rotary_emb, t)
        if state.active:
            z_neg = self._attend(text, image, slice(p, t), image_rotary_emb, t)
            image_out = state.combine(z_pos[:, p:], z_neg[:, n:])
            text_out = torch.cat([z_pos[:, :p], z_neg[:, :n]], dim=1)
        else:  # past nag_end: nothing reads the negative's stream any more
            image_out = z_pos[:, p:]
            text_out = torch.cat([z_pos[:, :p], z_pos.new_zeros(z_pos.shape[0], n, z_pos.shape[2])], dim=1)
        if not double:
            return torch.cat([text_out, image_out], dim=1)
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())

    def _attend(
        self,
        text: tuple[torch.Tensor, ...],
        image: tuple[torch.Tensor, ...],
        part: slice,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        text_length: int,
    ) -> torch.Tensor:
        """``FluxAttnProcessor``'s attention over ``[text[part]; image]`` (``batch, tokens, heads * head_dim``)."""
        import torch
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        query, key, value = (torch.cat([x[:, part], y], dim=1) for x, y in zip(text, image))
        if rotary is not None:
            rotary = tuple(torch.cat([r[part], r[text_length:]]) for r in rotary)
            query = apply_rotary_emb(query, rotary, sequence_dim=1)
            key = apply_rotary_emb(key, rotary, sequence_dim=1)
        out = dispatch_attention_fn(
            query, key, value, backend=self._attention_backend, parallel_config=self._parallel_config
        )
        return out.flatten(2, 3).to(query.dtype)


class NAGJointAttnProcessor:
    """NAG in SD3 / SD3.5 joint attention (``Attention`` with ``JointAttnProcessor2_0``; image tokens first).

    Args:
        state: The call's shared state.
        original: The processor it replaces (called for attention without text: SD3.5's second, image-only one).
    """

    def __init__(self, state: NAGState, original: Any):
        self.state = state
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        import torch

        if encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        state = self.state
        p, n = state.positive_length, state.negative_length
        _split(encoder_hidden_states, state)  # checks the length
        batch_size, image_length = hidden_states.shape[:2]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch_size, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query, key, value = (heads(f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        text_q = heads(attn.add_q_proj(encoder_hidden_states))
        text_k = heads(attn.add_k_proj(encoder_hidden_states))
        text_v = heads(attn.add_v_proj(encoder_hidden_states))
        if attn.norm_added_q is not None:
            text_q = attn.norm_added_q(text_q)
        if attn.norm_added_k is not None:
            text_k = attn.norm_added_k(text_k)
        image, text = (query, key, value), (text_q, text_k, text_v)
        z_pos = self._attend(image, text, slice(0, p), batch_size, attn.heads)
        if state.active:
            z_neg = self._attend(image, text, slice(p, p + n), batch_size, attn.heads)
            image_out = state.combine(z_pos[:, :image_length], z_neg[:, :image_length])
            text_out = torch.cat([z_pos[:, image_length:], z_neg[:, image_length:]], dim=1)
        else:
            image_out = z_pos[:, :image_length]
            text_out = torch.cat([z_pos[:, image_length:], z_pos.new_zeros(batch_size, n, z_pos.shape[2])], dim=1)
        if not attn.context_pre_only:
            text_out = attn.to_add_out(text_out)
        image_out = attn.to_out[1](attn.to_out[0](image_out))
        return image_out, text_out

    @staticmethod
    def _attend(
        image: tuple[torch.Tensor, ...], text: tuple[torch.Tensor, ...], part: slice, batch_size: int, heads: int
    ) -> torch.Tensor:
        """``JointAttnProcessor2_0``'s attention over ``[image; text[part]]`` (``batch, tokens, features``)."""
        import torch
        import torch.nn.functional as F

        query, key, value = (torch.cat([x, y[:, :, part]], dim=2) for x, y in zip(image, text))
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        return out.transpose(1, 2).reshape(batch_size, -1, heads * query.shape[-1]).to(query.dtype)


class NAGWanAttnProcessor:
    """NAG in Wan 2.x text cross-attention (``WanAttention`` with ``WanAttnProcessor``, text-to-video).

    Args:
        state: The call's shared state.
        original: The processor it replaces (called for self-attention); its attention backend is used.
    """

    def __init__(self, state: NAGState, original: Any):
        self.state = state
        self.original = original
        self._attention_backend = getattr(original, "_attention_backend", None)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        _no_mask(attention_mask, "Wan processor")
        state = self.state
        positive, negative = _split(encoder_hidden_states, state)
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        z = self._attend(attn, query, positive)
        if state.active:
            z = state.combine(z, self._attend(attn, query, negative))
        return attn.to_out[1](attn.to_out[0](z))

    def _attend(self, attn: Any, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``WanAttnProcessor``'s text attention of ``query`` over ``context``, before the output projection."""
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        if getattr(attn, "fused_projections", False):
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            key, value = attn.to_k(context), attn.to_v(context)
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        out = dispatch_attention_fn(
            query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, backend=self._attention_backend
        )
        return out.flatten(2, 3).type_as(query)
