"""The policy side of an RL step: the policy and its reference, sampling, images, rewards and token log-probs.

:func:`build_policy` makes the trained model from the user's generator (a LoRA adapter, and a frozen copy of it as
the KL reference when the generator already has one); :class:`RolloutSampler` turns a step number into a
:class:`Rollout`: the step's prompts, ``num_candidates`` negatives sampled for each, one image per negative (every
image of a prompt from the same seed) and their rewards, and gives the log-probs of the sampled tokens under the
policy or its reference. The update that uses them is :class:`negopt.train.rl.trainer.RLTrainer`'s.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from negopt.text import clean_negative, strip_echo
from negopt.train.rl import objective as objective
from negopt.train.rl.config import RLConfig

logger = logging.getLogger(__name__)

__all__ = ["REF_ADAPTER", "Rollout", "RolloutSampler", "build_policy", "load_pipeline"]

# The name of the frozen copy of a generator's own adapter: the KL reference.
REF_ADAPTER = "negopt_reference"


@dataclass
class Rollout:
    """One process's share of a step: prompts, sampled negatives and (once made) their images."""

    prompts: list[str]  # the local prompts of this step
    positions: list[int]  # their positions in the step's global batch (for image seeds)
    enc_ids: torch.Tensor  # (B, P) prompt token ids, padded (left for causal, right for seq2seq)
    enc_mask: torch.Tensor
    responses: torch.Tensor  # (B*k, T) sampled token ids, prompt-major
    response_mask: torch.Tensor  # (B*k, T) 1 up to and including EOS
    negatives: list[str]  # (B*k,) the negatives the pipeline sees
    decoder_start: torch.Tensor | None  # (B*k, 1) seq2seq: the decoder's first input, as generate used it
    images: list = field(default_factory=list)
    baseline_images: list = field(default_factory=list)


def build_policy(generator, config: RLConfig):
    """(peft model, tokenizer, NegOptConfig, adapter name, has reference adapter) from what the user gave."""
    from peft import PeftModel

    from negopt.config import NegOptConfig
    from negopt.train.lora import active_lora_adapter, add_lora, add_reference_adapter

    owned = False
    if isinstance(generator, str | os.PathLike):
        from negopt.generator.core import NegOptGenerator

        generator = NegOptGenerator.from_pretrained(os.fspath(generator))
        owned = True
    for attr in ("model", "tokenizer"):
        if not hasattr(generator, attr):
            raise TypeError(
                f"generator must be a NegOptGenerator (with .model, .tokenizer, .config) or a folder / hub id, got "
                f"{type(generator).__name__} without .{attr}."
            )
    model, tokenizer = generator.model, generator.tokenizer
    gcfg = getattr(generator, "config", None)
    if not isinstance(gcfg, NegOptConfig):
        from negopt.hub import model_type_of

        gcfg = NegOptConfig(model_type=model_type_of(model, "the generator's model"))
    # Never mutate what the caller handed in: LoRA injection and training happen on a copy.
    model = model if owned else copy.deepcopy(model)

    if isinstance(model, PeftModel):
        name = active_lora_adapter(model)
        # The starting policy (the KL reference) is this adapter as it is now: a frozen copy of it. Eval mode
        # throughout (also for an SFT adapter saved with dropout): the update's log-probs must be the sampler's.
        add_reference_adapter(model, name, REF_ADAPTER)
        return model, tokenizer, gcfg, name, True

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # LoRA's A matrices start random: the same seed, the same run
        model = add_lora(
            model,
            gcfg.model_type,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=0.0,  # the model runs in eval mode, where dropout does nothing
            target_modules=config.lora_target_modules,
        )
    model.eval()
    return model, tokenizer, gcfg, "default", False


def load_pipeline(pipeline, config: RLConfig, device):
    """The diffusers pipeline the images come from: ``pipeline`` itself, or loaded from a folder / hub id (safetensors
    only, ``config.pipeline_dtype``) and moved to ``device``; one with no negative slot, or one that makes video, is
    refused, and one whose negative would have no effect (guidance off, NAG not available) warned about."""
    if isinstance(pipeline, str | os.PathLike):
        from diffusers import DiffusionPipeline

        # diffusers loads float32 by default; pass a dtype only when asked (newer diffusers warn on torch_dtype).
        dtype = {"torch_dtype": getattr(torch, config.pipeline_dtype)} if config.pipeline_dtype else {}
        pipe = DiffusionPipeline.from_pretrained(os.fspath(pipeline), use_safetensors=True, **dtype)
        pipe.set_progress_bar_config(disable=True)
        pipeline = pipe.to(device)
    if not callable(pipeline):
        raise TypeError(f"pipeline must be a diffusers pipeline or a folder / hub id, got {type(pipeline).__name__}.")
    from negopt.pipeline import negative_slots
    from negopt.pipeline.families import is_video_pipeline

    negative_slots(pipeline)  # a pipeline with no negative slot would train on rewards the negative cannot move
    if is_video_pipeline(pipeline):
        raise ValueError(
            f"{type(pipeline).__name__} makes video, and RL on video is not supported: each rollout would render a "
            "whole video (Wan 2.1 1.3B at 480p, 81 frames, 50 steps: about 670 times the compute of a 512px SD 1.5 "
            "image; see 'RL on video' in the RL guide). Train on an image pipeline, then use the generator with "
            "NegOptPipeline(video_pipe, generator) and compare with `negopt eval`, which scores sampled frames."
        )
    from negopt.eval.rendering import resolve_render_guidance

    resolve_render_guidance(pipeline, config.pipeline_kwargs, config.guidance, stacklevel=3)
    return pipeline


class RolloutSampler:
    """Makes each step's :class:`Rollout` and scores its tokens under the policy or the reference.

    It replaces the policy's ``generation_config`` by a clean one (plain multinomial sampling at the configured
    temperature): ``generate`` fills every setting its config leaves unset from the model's own, and the update's
    log-probs must be those of exactly the distribution sampled from.

    Args:
        config: The run's settings.
        accelerator: The run's ``accelerate.Accelerator`` (device, process index, autocast).
        policy: The peft model (unwrapped) that samples.
        tokenizer: The generator's tokenizer.
        generator_config: The generator's ``NegOptConfig`` (template, input limit, model type).
        pipeline: The diffusers pipeline that makes the images.
        reward: ``reward(images=..., prompts=..., negative_prompts=...) -> list[float]``.
        prompts: All training prompts.
        has_reference: Whether the policy holds a frozen :data:`REF_ADAPTER` (else the reference is the base model).
    """

    def __init__(
        self,
        config: RLConfig,
        accelerator: Any,
        policy: Any,
        tokenizer: Any,
        generator_config: Any,
        pipeline: Any,
        reward: Any,
        prompts: list[str],
        *,
        has_reference: bool,
    ) -> None:
        from negopt.generator.core import NegOptGenerator

        self.config = config
        self.accelerator = accelerator
        self.policy = policy
        self.tokenizer = tokenizer
        self.pipeline = pipeline
        self.reward = reward
        self.prompts = prompts
        self.has_reference = has_reference
        self.is_seq2seq = generator_config.model_type == "seq2seq"
        self.local_batch_size = config.batch_size // accelerator.num_processes
        self._perms: dict[int, torch.Tensor] = {}

        tok = tokenizer
        base = policy.get_base_model()
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = getattr(base.generation_config, "eos_token_id", None)
        eos = tok.eos_token_id if eos is None else eos
        self.eos_token_ids = sorted({eos} if isinstance(eos, int) else set(eos))
        if self.pad_token_id is None or not self.eos_token_ids:
            raise ValueError("the generator's tokenizer needs an eos token (and a pad token or the eos as pad).")
        self.generation_config = self._clean_generation_config(base)
        # generate() fills every setting its generation_config leaves unset from the model's own (BART's
        # forced_eos_token_id, a min_length, suppress_tokens, ...): the model the trainer owns gets the clean one.
        base.generation_config = self.generation_config
        self._encoder = NegOptGenerator(policy, tokenizer, generator_config)

    def _clean_generation_config(self, model):
        """Plain multinomial sampling at ``temperature``: the special-token ids and the RL settings, nothing else."""
        from transformers import GenerationConfig

        own, cfg = model.generation_config, model.config
        special = {}
        for key in ("bos_token_id", "decoder_start_token_id"):
            value = getattr(own, key, None)
            value = getattr(cfg, key, None) if value is None else value
            if value is not None:
                special[key] = value
        gen = self.config.generation_kwargs
        return GenerationConfig(
            do_sample=True,
            num_beams=1,
            top_k=0,
            top_p=1.0,
            temperature=float(gen["temperature"]),
            max_new_tokens=int(gen["max_new_tokens"]),
            num_return_sequences=self.config.num_candidates,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids,
            **special,
        )

    # ------------------------------------------------------------------------------------------------ prompts
    def step_prompts(self, step: int) -> tuple[list[str], list[int]]:
        """This process's prompts of ``step`` and their positions in the step's global batch."""
        n, b = len(self.prompts), self.config.batch_size
        start = self.accelerator.process_index * self.local_batch_size
        positions = list(range(start, start + self.local_batch_size))
        out = []
        for pos in positions:
            flat = step * b + pos
            epoch = flat // n
            if epoch not in self._perms:
                rng = torch.Generator().manual_seed(self.config.seed + epoch)
                self._perms = {epoch: torch.randperm(n, generator=rng)}
            out.append(self.prompts[int(self._perms[epoch][flat % n])])
        return out, positions

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and mask of ``prompts``, encoded by ``NegOptGenerator.encode_prompts`` (as at inference)."""
        ids = self._encoder.encode_prompts(
            prompts, max_new_tokens=int(self.config.generation_kwargs["max_new_tokens"])
        )
        width = max(len(x) for x in ids)
        left = not self.is_seq2seq  # a causal model continues from the last position: pad on the left
        rows, masks = [], []
        for x in ids:
            pad = [self.pad_token_id] * (width - len(x))
            rows.append(pad + x if left else x + pad)
            masks.append([0] * len(pad) + [1] * len(x) if left else [1] * len(x) + [0] * len(pad))
        device = self.accelerator.device
        return torch.tensor(rows, device=device), torch.tensor(masks, device=device)

    # ------------------------------------------------------------------------------------------------ phases
    @torch.no_grad()
    def sample(self, step: int) -> Rollout:
        """``num_candidates`` negatives for each of this process's prompts of ``step``, from the policy."""
        prompts, positions = self.step_prompts(step)
        enc_ids, enc_mask = self.encode(prompts)
        k = self.config.num_candidates
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices), self.accelerator.autocast():
            # Seeded per step (and process), so a resumed run samples exactly what the uninterrupted one would.
            torch.manual_seed(self.config.seed * 1_000_003 + step * 101 + self.accelerator.process_index)
            out = self.policy.generate(
                input_ids=enc_ids, attention_mask=enc_mask, generation_config=self.generation_config
            )
        responses = out[:, 1:] if self.is_seq2seq else out[:, enc_ids.shape[1] :]
        is_eos = torch.isin(responses, torch.tensor(self.eos_token_ids, device=responses.device))
        # Tokens up to and including the first EOS; what follows is padding.
        response_mask = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int() == 0).long()
        texts = self.tokenizer.batch_decode(
            responses * response_mask + self.pad_token_id * (1 - response_mask), skip_special_tokens=True
        )
        negatives = []
        for i, text in enumerate(texts):
            text = text.strip()
            negatives.append(clean_negative(strip_echo(text, prompts[i // k])) if self.config.postprocess else text)
        start = out[:, :1] if self.is_seq2seq else None
        return Rollout(prompts, positions, enc_ids, enc_mask, responses, response_mask, negatives, start)

    def image_seed(self, step: int, position: int) -> int:
        """The seed of every image of the prompt at ``position`` in ``step``'s global batch."""
        return (self.config.seed * 7_919 + step) * 1_009 + position

    @torch.no_grad()
    def make_images(self, rollout: Rollout, step: int) -> None:
        """Fill ``rollout.images`` (and ``rollout.baseline_images`` if ``config.baseline_image``)."""
        k = self.config.num_candidates
        calls = []  # (prompt, negative, seed); the k negatives of a prompt share its seed
        for i, (prompt, pos) in enumerate(zip(rollout.prompts, rollout.positions)):
            seed = self.image_seed(step, pos)
            calls += [(prompt, neg, seed) for neg in rollout.negatives[i * k : (i + 1) * k]]
        rollout.images = self._render(calls)
        if self.config.baseline_image:
            # The negative omitted, not "": SDXL zeroes the negative embeddings only for None, so "" would not be
            # what the bare pipeline makes (nor eval's "none" condition).
            base = [(p, None, self.image_seed(step, pos)) for p, pos in zip(rollout.prompts, rollout.positions)]
            rollout.baseline_images = self._render(base)

    def _render(self, calls: list[tuple[str, str | None, int]]) -> list:
        """Images of ``(prompt, negative, seed)`` calls, ``image_batch_size`` at a time, by
        :func:`negopt.eval.rendering.render` (a CPU generator seeded per image); a None negative is omitted."""
        from negopt.eval.rendering import render

        chunk = self.config.image_batch_size or len(calls)
        images = []
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            negatives = None if part[0][1] is None else [c[1] for c in part]
            images += render(
                self.pipeline,
                [c[0] for c in part],
                negatives,
                [c[2] for c in part],
                pipeline_kwargs=self.config.pipeline_kwargs,
                guidance=self.config.guidance,
            )
        return images

    def score(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """(rewards of the negatives' images, rewards of the no-negative images or None, the reward's terms)."""
        k = self.config.num_candidates
        images = rollout.images + rollout.baseline_images
        prompts = [p for p in rollout.prompts for _ in range(k)] + (rollout.prompts if rollout.baseline_images else [])
        negatives = rollout.negatives + [""] * len(rollout.baseline_images)
        values = self.reward(images=images, prompts=prompts, negative_prompts=negatives)
        rewards = _as_floats(values, len(images), "reward")
        terms = {}
        last_terms = getattr(self.reward, "last_terms", None)
        if isinstance(last_terms, dict):
            for name, term in last_terms.items():
                try:
                    terms[str(name)] = _as_floats(term, len(images), f"reward.last_terms[{name!r}]")
                except (TypeError, ValueError):
                    logger.debug("reward term %r is not one value per image; not logged", name)
        n = len(rollout.images)
        base = rewards[n:] if rollout.baseline_images else None
        return rewards[:n], base, terms

    # ------------------------------------------------------------------------------------------------ log-probs
    def token_logprobs(self, model, rollout: Rollout, adapter_names: list[str] | None = None) -> torch.Tensor:
        """Log-probabilities of the sampled tokens under ``model``, ``(B*k, T)``, at the sampling temperature."""
        k = self.config.num_candidates
        ids = rollout.enc_ids.repeat_interleave(k, dim=0)
        mask = rollout.enc_mask.repeat_interleave(k, dim=0)
        resp = rollout.responses
        extra = {"adapter_names": adapter_names} if adapter_names is not None else {}
        with self.accelerator.autocast():
            if self.is_seq2seq:
                dec_in = torch.cat([rollout.decoder_start, resp[:, :-1]], dim=1)
                logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in, **extra).logits
            else:
                full = torch.cat([ids, resp], dim=1)
                attn = torch.cat([mask, rollout.response_mask], dim=1)
                position_ids = (attn.cumsum(dim=1) - 1).clamp(min=0)
                logits = model(input_ids=full, attention_mask=attn, position_ids=position_ids, **extra).logits
                logits = logits[:, ids.shape[1] - 1 : -1]
        return objective.token_logprobs(logits, resp, float(self.config.generation_kwargs["temperature"]))

    @torch.no_grad()
    def ref_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """The sampled tokens' log-probs under the starting policy (the frozen adapter copy, or no adapter)."""
        if self.has_reference:
            names = [REF_ADAPTER] * rollout.responses.shape[0]
            return self.token_logprobs(self.policy, rollout, adapter_names=names)
        with self.policy.disable_adapter():
            return self.token_logprobs(self.policy, rollout)


def _as_floats(values, n: int, what: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().flatten().tolist()
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must return one float per image, got {type(values).__name__}: {e}") from e
    if len(out) != n:
        raise ValueError(f"{what} returned {len(out)} values for {n} images; it must return one per image.")
    return torch.tensor(out, dtype=torch.float32)
