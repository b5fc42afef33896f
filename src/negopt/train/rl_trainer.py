"""The RL trainer (NegOpt's second stage): sampling, images, reward, update, saving.

The loop, one step:

1. take ``batch_size`` prompts (each process its share) and sample ``num_candidates`` negatives for each from the
   policy (the generator with a LoRA adapter), from exactly the distribution whose log-probs the update uses;
2. make one image per negative, every image of a prompt from the same seed, so that reward differences come from
   the negative prompt and not from the noise (optionally one more image with the negative omitted, as a baseline);
3. score the images with the reward;
4. turn rewards into advantages within each prompt's group and take a policy-gradient step (the maths is in
   :mod:`negopt.train.rl_objective`), optionally PPO-style over several epochs, with a KL penalty to the starting
   policy.

trl cannot train encoder-decoder models, so this loop is ours, on accelerate and peft; it trains seq2seq (T5, BART)
and causal (GPT-2 style) generators alike.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from negopt.text import clean_negative, strip_echo
from negopt.train import rl_checkpoint as ckpt
from negopt.train import rl_objective as objective
from negopt.train.checkpointing import SigtermFlag, check_output_dir
from negopt.train.rl_config import RLConfig, RLTrainerState

logger = logging.getLogger(__name__)

__all__ = ["RLTrainer"]

REF_ADAPTER = "negopt_reference"
# Pixel size of each image in the sample grids under output_dir/samples.
SAMPLE_CELL_SIZE = 256


@dataclass
class _Rollout:
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


class RLTrainer:
    """Policy-gradient fine-tuning of a generator's LoRA adapter against an image reward.

    The generator is trained as a LoRA adapter (``lora_r``, ``lora_alpha``, ``target_modules="all-linear"``, made by
    :func:`negopt.train.lora.add_lora`). If its model already is a peft model with a LoRA adapter (an SFT result,
    say), that adapter is trained further instead of stacking a new one, and the KL reference is a frozen copy of it
    (a second adapter of a few MB, not a second model); otherwise the reference is the base model, run with the
    adapter disabled. Either way policy and reference are the same function at step 0, to the last bit: the model
    always runs in eval mode (no dropout). The generator object you pass is not modified: the trainer works on a copy
    (``trainer.model``), whose ``generation_config`` it replaces by a clean one (see ``generation_config``).

    Prompts are encoded exactly as ``NegOptGenerator`` encodes them at inference (its template, its input limit).
    A reward with a ``.to`` method is moved to the training device.

    Multi-process runs (``torchrun`` or ``accelerate launch``) split each step's prompts among the processes and
    average the gradients; every process needs the pipeline and the reward.

    Args:
        config: The run's settings.
        generator: A ``NegOptGenerator`` (anything with ``.model``, ``.tokenizer`` and ``.config``, a
            ``NegOptConfig``), or a folder / hub id that ``NegOptGenerator.from_pretrained`` loads.
        pipeline: A diffusers pipeline with a negative slot (called with ``prompt``, ``negative_prompt``,
            ``generator`` (a list of ``torch.Generator``), ``num_images_per_prompt`` and ``output_type="pil"``), or
            a folder / hub id for ``DiffusionPipeline.from_pretrained`` (safetensors only; moved to the training
            device). A pipeline object is used as given, on its own device.
        reward: ``reward(images=..., prompts=..., negative_prompts=...) -> list[float]``, higher is better. If it
            has a ``last_terms`` attribute (a dict of name -> per-image values) after a call, each term is logged.
        prompts: A list of prompts, a ``datasets`` Dataset with a ``prompt`` column, or anything
            :func:`negopt.data.load_prompts` reads (a ``.txt`` file, one prompt a line; a ``.jsonl`` / ``.json`` /
            ``.csv`` / ``.parquet`` file, a saved dataset folder or a hub dataset id, of which only the prompts of
            NegOpt's ``train`` split are kept, as ``negopt train rl`` does).

    Raises:
        FileNotFoundError: ``prompts`` names a file that does not exist.
        ValueError: Empty prompts, a batch that does not split among the processes, a non-LoRA peft model, a
            pipeline with no negative slot (``negopt.pipeline.negative_slots``).
        NotADirectoryError: ``output_dir`` (or its ``checkpoints`` entry) is a file.
        TypeError: A generator, pipeline or reward of the wrong kind.

    Example:
        >>> from negopt.train import RLConfig, RLTrainer
        >>> trainer = RLTrainer(RLConfig(output_dir="out/rl", max_steps=200), generator="out/sft",
        ...                     pipeline=sd_pipe, reward=my_reward, prompts="prompts.txt")  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RLConfig,
        *,
        generator: Any,
        pipeline: Any,
        reward: Callable[..., Sequence[float]],
        prompts: Sequence[str] | str | os.PathLike | Any,
    ) -> None:
        from accelerate import Accelerator

        if not isinstance(config, RLConfig):
            raise TypeError(f"config must be an RLConfig, got {type(config).__name__}.")
        if not callable(reward):
            raise TypeError(
                f"reward must be callable as reward(images=..., prompts=..., negative_prompts=...), "
                f"got {type(reward).__name__}."
            )
        check_output_dir(config.output_dir)
        self.config = config
        self.reward = reward
        report_to = None if config.report_to in ("none", ["none"], []) else config.report_to
        # Under torchrun with no GPU, accelerate runs multi-process (gloo) only when told to use the CPU.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = Accelerator(
            log_with=report_to,
            project_dir=os.path.join(config.output_dir, "logs"),
            mixed_precision=config.mixed_precision,
            cpu=config.cpu or multi_cpu,
        )
        world = self.accelerator.num_processes
        if config.batch_size % world:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be a multiple of the number of processes ({world}): each "
                "process takes an equal share of a step's prompts."
            )
        self.local_batch_size = config.batch_size // world

        self.prompts = _load_prompts(prompts)
        self.model, self.tokenizer, self.generator_config, self.adapter_name, self._ref_adapter = _policy(
            generator, config
        )
        self.is_seq2seq = self.generator_config.model_type == "seq2seq"
        self.pipeline = self._load_pipeline(pipeline)
        if callable(getattr(reward, "to", None)):
            reward.to(self.accelerator.device)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = config.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        # Checkpoints are accelerate's save_state / load_state (optimizer, every RNG, the objects registered here);
        # the hooks write and read the trained adapter alone instead of the whole model.
        self.accelerator.register_for_checkpointing(self.lr_scheduler)
        stateful = callable(getattr(reward, "state_dict", None)) and callable(getattr(reward, "load_state_dict", None))
        if stateful and not isinstance(reward, torch.nn.Module):  # a module's state is its (fixed) weights
            # A normalising reward's running statistics: without them a resume is not exact.
            self.accelerator.register_for_checkpointing(_PerProcessState(reward, self.accelerator))
        self.accelerator.register_save_state_pre_hook(self._save_state_hook)
        self.accelerator.register_load_state_pre_hook(self._load_state_hook)
        self.state = RLTrainerState()
        self.log_history: list[dict[str, float]] = []
        self.last_timings: dict[str, float] = {}
        self._perms: dict[int, torch.Tensor] = {}
        self._sigterm = SigtermFlag()

        tok = self.tokenizer
        base = self._policy.get_base_model()
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
        from negopt.generator import NegOptGenerator

        self._encoder = NegOptGenerator(self._policy, self.tokenizer, self.generator_config)

    # ------------------------------------------------------------------------------------------------ set-up
    @property
    def _policy(self):
        """The peft model itself (no DDP wrapper): for generate, adapters and saving."""
        return self.accelerator.unwrap_model(self.model)

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

    def _load_pipeline(self, pipeline):
        if isinstance(pipeline, str | os.PathLike):
            from diffusers import DiffusionPipeline

            # diffusers loads float32 by default; pass a dtype only when asked (newer diffusers warn on torch_dtype).
            dtype = {"torch_dtype": getattr(torch, self.config.pipeline_dtype)} if self.config.pipeline_dtype else {}
            pipe = DiffusionPipeline.from_pretrained(os.fspath(pipeline), use_safetensors=True, **dtype)
            pipe.set_progress_bar_config(disable=True)
            pipeline = pipe.to(self.accelerator.device)
        if not callable(pipeline):
            raise TypeError(
                f"pipeline must be a diffusers pipeline or a folder / hub id, got {type(pipeline).__name__}."
            )
        from negopt.pipeline import negative_slots

        negative_slots(pipeline)  # a pipeline with no negative slot would train on rewards the negative cannot move
        return pipeline

    # ------------------------------------------------------------------------------------------------ prompts
    def _step_prompts(self, step: int) -> tuple[list[str], list[int]]:
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

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
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
    def _sample(self, step: int) -> _Rollout:
        prompts, positions = self._step_prompts(step)
        enc_ids, enc_mask = self._encode(prompts)
        k = self.config.num_candidates
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices), self.accelerator.autocast():
            # Seeded per step (and process), so a resumed run samples exactly what the uninterrupted one would.
            torch.manual_seed(self.config.seed * 1_000_003 + step * 101 + self.accelerator.process_index)
            out = self._policy.generate(
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
        return _Rollout(prompts, positions, enc_ids, enc_mask, responses, response_mask, negatives, start)

    def _image_seed(self, step: int, position: int) -> int:
        return (self.config.seed * 7_919 + step) * 1_009 + position

    @torch.no_grad()
    def _make_images(self, rollout: _Rollout, step: int) -> None:
        k = self.config.num_candidates
        calls = []  # (prompt, negative, seed); the k negatives of a prompt share its seed
        for i, (prompt, pos) in enumerate(zip(rollout.prompts, rollout.positions)):
            seed = self._image_seed(step, pos)
            calls += [(prompt, neg, seed) for neg in rollout.negatives[i * k : (i + 1) * k]]
        rollout.images = self._render(calls)
        if self.config.baseline_image:
            # The negative omitted, not "": SDXL zeroes the negative embeddings only for None, so "" would not be
            # what the bare pipeline makes (nor eval's "none" condition).
            base = [(p, None, self._image_seed(step, pos)) for p, pos in zip(rollout.prompts, rollout.positions)]
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
            )
        return images

    def _score(self, rollout: _Rollout) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
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

    def _token_logprobs(self, model, rollout: _Rollout, adapter_names: list[str] | None = None) -> torch.Tensor:
        """Log-probabilities of the sampled tokens, ``(B*k, T)``, at the sampling temperature."""
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
    def _ref_logprobs(self, rollout: _Rollout) -> torch.Tensor:
        """The sampled tokens' log-probs under the starting policy (the frozen adapter copy, or no adapter)."""
        if self._ref_adapter:
            names = [REF_ADAPTER] * rollout.responses.shape[0]
            return self._token_logprobs(self._policy, rollout, adapter_names=names)
        with self._policy.disable_adapter():
            return self._token_logprobs(self._policy, rollout)

    def _update(self, rollout: _Rollout, logp, old, ref, adv, weight, global_weight: float) -> dict[str, float]:
        """``ppo_epochs`` passes of :func:`~negopt.train.rl_objective.policy_loss`; ``logp`` is the first pass's."""
        cfg = self.config
        tmask = rollout.response_mask.float()
        stats = {"loss": 0.0, "clipped": 0.0, "clip_tokens": 0.0}
        for epoch in range(cfg.ppo_epochs):
            if epoch:
                logp = self._token_logprobs(self.model, rollout)
            loss, parts = objective.policy_loss(
                logp,
                old,
                tmask,
                adv,
                weight,
                loss_type=cfg.loss_type,
                max_new_tokens=int(cfg.generation_kwargs["max_new_tokens"]),
                num_sequences=global_weight,
                clip_range=cfg.clip_range,
                ref_logp=ref if cfg.kl_mode == "loss" else None,
                kl_coef=cfg.kl_coef,
            )
            # The loss is this process's share of the mean over the whole step's kept sequences; gradients are
            # averaged over processes, so scale back up by their count.
            self.accelerator.backward(loss * self.accelerator.num_processes)
            if cfg.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if global_weight > 0:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if epoch == 0:
                stats["loss"] = float(loss.detach())
            else:  # the first pass has ratio 1: the clip fraction counts the later ones
                stats["clipped"] += float(parts["clipped"].sum())
                stats["clip_tokens"] += float(tmask.sum())
        if global_weight > 0:  # a step with no kept sample makes no update and does not advance the schedule
            self.lr_scheduler.step()
        return stats

    # ------------------------------------------------------------------------------------------------ the loop
    def step(self) -> dict[str, float]:
        """Run one RL step (sample, images, reward, update) and return its metrics (over all processes)."""
        cfg, acc = self.config, self.accelerator
        step = self.state.step
        timings = {}
        t0 = t = _now()
        rollout = self._sample(step)
        timings["sample"], t = _now() - t, _now()
        self._make_images(rollout, step)
        timings["images"], t = _now() - t, _now()
        rewards, baseline, terms = self._score(rollout)
        timings["reward"], t = _now() - t, _now()

        finite = torch.isfinite(rewards)
        dropped = int((~finite).sum())
        if dropped:
            warnings.warn(
                f"step {step}: {dropped} of {len(rewards)} rewards are NaN or infinite; they are dropped from the "
                "update (a prompt with fewer than 2 finite rewards is skipped). Check the reward model's inputs.",
                RuntimeWarning,
                stacklevel=2,
            )
        tmask = rollout.response_mask.float()
        ref = self._ref_logprobs(rollout) if cfg.kl_coef > 0 else None
        logp = self._token_logprobs(self.model, rollout)  # the first pass, before any update: the sampler's
        old = logp.detach()
        scored = rewards
        kl_seq = None
        if ref is not None:
            kl_seq = objective.sequence_kl(old, ref, tmask, cfg.kl_mode).cpu()
            if cfg.kl_mode == "reward":
                scored = objective.penalized_rewards(rewards, old.cpu(), ref.cpu(), tmask.cpu(), cfg.kl_coef)
        adv, weight, skipped = objective.group_advantages(scored, cfg.num_candidates, cfg.advantage, baseline)
        lengths = rollout.response_mask.sum(dim=1).float().cpu()
        local = [
            torch.where(finite, rewards, 0).sum(),
            finite.sum(),
            float(dropped),
            float(skipped),
            weight.sum(),
            lengths.sum(),
            float(len(rewards)),
            float(len(rollout.prompts)),
            float((kl_seq * weight).sum()) if kl_seq is not None else 0.0,
        ]
        names = ["r_sum", "r_n", "dropped", "skipped", "kept", "len_sum", "n", "groups", "kl_sum"]
        if baseline is not None:
            bf = torch.isfinite(baseline)
            local += [torch.where(bf, baseline, 0).sum(), bf.sum()]
            names += ["b_sum", "b_n"]
        for tname in sorted(terms):
            tv = terms[tname]
            tf = torch.isfinite(tv[: len(rewards)])
            local += [torch.where(tf, tv[: len(rewards)], 0).sum(), tf.sum()]
            names += [f"t_sum/{tname}", f"t_n/{tname}"]
        totals = dict(zip(names, self._reduce([float(x) for x in local])))
        lr = self.lr_scheduler.get_last_lr()[0]  # the rate this step's update uses
        update = self._update(rollout, logp, old, ref, adv, weight, totals["kept"])
        loss, clipped, clip_tokens = self._reduce([update["loss"], update["clipped"], update["clip_tokens"]])
        timings["update"] = _now() - t
        timings["total"] = _now() - t0
        self.last_timings = timings

        st = self.state
        st.step += 1
        st.rewards_seen += int(totals["n"])
        st.rewards_dropped += int(totals["dropped"])
        st.groups_skipped += int(totals["skipped"])
        mean_r = totals["r_sum"] / totals["r_n"] if totals["r_n"] else float("nan")
        if math.isfinite(mean_r):
            st.reward_mean_ema = mean_r if st.reward_mean_ema is None else 0.9 * st.reward_mean_ema + 0.1 * mean_r
        metrics = {
            "reward/mean": mean_r,
            "loss": loss,
            "negative_length": totals["len_sum"] / totals["n"],
            "rewards_dropped": float(st.rewards_dropped),
            "groups_skipped": float(st.groups_skipped),
            "lr": lr,
        }
        if cfg.kl_coef > 0:  # with no penalty the reference pass is skipped, and so is its KL
            metrics["kl"] = totals["kl_sum"] / totals["kept"] if totals["kept"] else 0.0
        if cfg.ppo_epochs > 1:
            metrics["clip_fraction"] = clipped / clip_tokens if clip_tokens else 0.0
        if baseline is not None:
            metrics["reward/no_negative"] = totals["b_sum"] / totals["b_n"] if totals["b_n"] else float("nan")
            metrics["reward/gain"] = mean_r - metrics["reward/no_negative"]
        for tname in sorted(terms):
            n = totals[f"t_n/{tname}"]
            metrics[f"reward/{tname}"] = totals[f"t_sum/{tname}"] / n if n else float("nan")
        metrics.update({f"time/{k}": v for k, v in timings.items()})
        self.log_history.append({"step": st.step, **metrics})
        if st.step % cfg.logging_steps == 0:
            acc.log(metrics, step=st.step)
            logger.info("step %d: %s", st.step, {k: round(v, 4) for k, v in metrics.items()})
        if cfg.sample_steps and st.step % cfg.sample_steps == 0 and acc.is_main_process:
            self._save_samples(rollout, rewards, baseline, st.step)
        return metrics

    def train(self, resume_from_checkpoint: bool | str | None = None) -> RLTrainerState:
        """Train for ``config.max_steps`` steps, then save the generator to ``config.output_dir``.

        Args:
            resume_from_checkpoint: True: the newest complete checkpoint in ``output_dir`` (if any); a path: that
                checkpoint; None: as ``config.resume`` / ``config.resume_from_checkpoint`` say.

        Returns:
            The final state; ``state.interrupted`` is True if SIGTERM stopped the run (after a checkpoint), in which
            case the final generator is not written.

        Raises:
            FileNotFoundError: A checkpoint path that does not exist or is incomplete.
            FileExistsError: ``output_dir`` holds an earlier run's checkpoints and this run does not resume.
        """
        cfg, acc = self.config, self.accelerator
        if resume_from_checkpoint is None:
            resume_from_checkpoint = cfg.resume_from_checkpoint or cfg.resume
        path = None
        if resume_from_checkpoint is True:
            path = ckpt.latest_checkpoint(cfg.output_dir)
            if path is None:
                logger.info("no checkpoint in %s: starting from scratch", cfg.output_dir)
        elif resume_from_checkpoint:
            path = os.fspath(resume_from_checkpoint)
        else:
            earlier = ckpt.list_checkpoints(cfg.output_dir)
            if earlier:
                # Checkpoint rotation sorts by step: an earlier run's step-500 would outlive this run's step-50.
                raise FileExistsError(
                    f"output_dir={cfg.output_dir!r} already holds checkpoints of an earlier run (newest: "
                    f"{earlier[-1][1]}): pass resume=True (--resume) to continue, or choose another output_dir."
                )
        if path is not None:
            self.load_checkpoint(path)

        if acc.is_main_process:
            os.makedirs(cfg.output_dir, exist_ok=True)
        acc.init_trackers("negopt-rl", config=_flat_config(cfg))
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.max_steps,
            initial=self.state.step,
            desc="RL",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        with self._sigterm:
            try:
                last_saved = self.state.step
                while self.state.step < cfg.max_steps:
                    metrics = self.step()
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward/mean']:.4g}")
                    if cfg.save_steps and self.state.step % cfg.save_steps == 0:
                        self.save_checkpoint()
                        last_saved = self.state.step
                    if self._any_process(self._sigterm.requested):
                        if last_saved != self.state.step:
                            self.save_checkpoint()
                        self.state.interrupted = True
                        logger.warning(
                            "SIGTERM: checkpoint saved at step %d; resume with resume=True", self.state.step
                        )
                        break
                else:
                    self.save_model()
            finally:
                bar.close()
                acc.end_training()
        return self.state

    # ------------------------------------------------------------------------------------------------ saving
    def save_model(self, output_dir: str | os.PathLike | None = None) -> str:
        """Save the trained generator (LoRA adapter, tokenizer, ``negopt_config.json``) for
        ``NegOptGenerator.from_pretrained``; returns the folder."""
        out = os.fspath(output_dir or self.config.output_dir)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            os.makedirs(out, exist_ok=True)
            _save_adapter(self._policy, self.adapter_name, out)
            self.tokenizer.save_pretrained(out)
            cfg = copy.deepcopy(self.generator_config)
            base = self._policy.peft_config[self.adapter_name].base_model_name_or_path
            if base:
                cfg.base_model_name_or_path = base
            else:
                warnings.warn(
                    "the generator's base model has no name or path (it was built in memory), so the saved adapter "
                    f"in {out} cannot find its base model. Save the base model and load it from that folder first.",
                    UserWarning,
                    stacklevel=2,
                )
            cfg.save_pretrained(out)
        self.accelerator.wait_for_everyone()
        return out

    def save_checkpoint(self) -> str:
        """Write ``output_dir/checkpoints/step-N`` (atomically) and return its path.

        accelerate's ``save_state`` writes the optimizer, the learning-rate schedule, every process's RNG state and a
        normalising reward's statistics; the trained adapter (safetensors) is written by a hook instead of the whole
        model; ``trainer_state.json`` comes last. All of it goes into a hidden temporary folder that is renamed into
        place when complete, so a kill never leaves a half checkpoint.
        """
        acc, cfg, step = self.accelerator, self.config, self.state.step
        tmp = os.path.join(cfg.output_dir, ckpt.CHECKPOINTS_DIR, f".tmp-step-{step}")
        if acc.is_main_process:
            ckpt.begin_checkpoint(cfg.output_dir, step)
        acc.wait_for_everyone()
        acc.save_state(tmp)
        acc.wait_for_everyone()
        final = ckpt.checkpoint_path(cfg.output_dir, step)
        if acc.is_main_process:
            state = dataclasses.asdict(self.state)
            state.update(num_processes=acc.num_processes, adapter_name=self.adapter_name)
            # trainer_state.json last: its presence marks the folder complete.
            ckpt.write_json(os.path.join(tmp, ckpt.TRAINER_STATE_NAME), state)
            ckpt.commit_checkpoint(tmp, cfg.output_dir, step, cfg.save_total_limit)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore adapter weights, optimizer, scheduler, RNG, the reward's statistics and state from a checkpoint."""
        path = os.fspath(path)
        state_file = os.path.join(path, ckpt.TRAINER_STATE_NAME)
        if not os.path.isfile(state_file):
            raise FileNotFoundError(
                f"resume_from_checkpoint={path!r} is not a complete checkpoint (no {ckpt.TRAINER_STATE_NAME}); pass "
                "a folder under output_dir/checkpoints or resume=True for the newest one."
            )
        data = ckpt.read_json(state_file)
        self.accelerator.load_state(path)
        known = {f.name for f in dataclasses.fields(RLTrainerState)}
        self.state = RLTrainerState(**{k: v for k, v in data.items() if k in known and k != "interrupted"})
        logger.info("resumed from %s at step %d", path, self.state.step)

    def _save_state_hook(self, models: list, weights: list, output_dir: str) -> None:
        # Only the trained adapter goes into a checkpoint, not the base model accelerate would write.
        weights.clear()
        if self.accelerator.is_main_process:
            _save_adapter(self._policy, self.adapter_name, output_dir)

    def _load_state_hook(self, models: list, input_dir: str) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        models.clear()
        weights = load_file(os.path.join(input_dir, "adapter_model.safetensors"), device=str(self.accelerator.device))
        result = set_peft_model_state_dict(self._policy, weights, adapter_name=self.adapter_name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            raise ValueError(
                f"checkpoint {input_dir} does not match this model's adapter: unexpected keys {unexpected[:3]}"
            )

    def _save_samples(self, rollout: _Rollout, rewards: torch.Tensor, baseline, step: int) -> None:
        from negopt.eval.figures import make_grid

        k = self.config.num_candidates
        tiles = list(zip(rollout.images[:k], rollout.negatives[:k], rewards[:k].tolist()))
        if rollout.baseline_images:
            tiles.append((rollout.baseline_images[0], None, float(baseline[0])))
        # One row: the first prompt's candidates (and its image with no negative), each headed by its reward.
        grid = make_grid(
            [[t[0] for t in tiles]],
            [rollout.prompts[0]],
            [f"reward {t[2]:.4g}" for t in tiles],
            [[t[1] for t in tiles]],
            cell_size=SAMPLE_CELL_SIZE,
        )
        folder = os.path.join(self.config.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        grid.save(os.path.join(folder, f"step-{step:06d}.png"))
        ckpt.write_json(
            os.path.join(folder, f"step-{step:06d}.json"),
            {
                "prompt": rollout.prompts[0],
                "negative_prompts": [t[1] for t in tiles],  # None: the image made with no negative
                "rewards": [t[2] for t in tiles],
            },
        )
        import numpy as np

        for tracker in self.accelerator.trackers:
            try:
                if tracker.name == "tensorboard":
                    tracker.log_images({"samples": np.asarray(grid)[None]}, step=step, dataformats="NHWC")
                elif hasattr(tracker, "log_images"):
                    tracker.log_images({"samples": [grid]}, step=step)
            except Exception as e:  # a tracker that cannot take images must not stop training
                logger.debug("tracker %s did not take the sample grid: %s", tracker.name, e)

    # ------------------------------------------------------------------------------------------------ helpers
    def _reduce(self, values: list[float]) -> list[float]:
        if self.accelerator.num_processes == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def _any_process(self, flag: bool) -> bool:
        return self._reduce([float(flag)])[0] > 0


# ---------------------------------------------------------------------------------------------------- functions
def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # so each phase's GPU work is charged to it
    return time.perf_counter()


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


def _load_prompts(prompts) -> list[str]:
    """The training prompts, read by :func:`negopt.data.load_prompts` with the held-out rule of ``negopt train rl``:
    every prompt of a list, a dataset object or a ``.txt`` file; only the ``train`` split's (of
    :func:`negopt.data.split_of`) of any other file or a hub id, so that NegOpt's validation and test prompts stay
    out of RL."""
    from negopt.data import load_prompts

    listed = not isinstance(prompts, str | os.PathLike) or os.fspath(prompts).lower().endswith(".txt")
    return load_prompts(prompts, split=("train",), heldout_split=None if listed else "train")


def _policy(generator, config: RLConfig):
    """(peft model, tokenizer, NegOptConfig, adapter name, has reference adapter) from what the user gave."""
    from peft import PeftModel

    from negopt.config import NegOptConfig
    from negopt.train.lora import active_lora_adapter, add_lora, add_reference_adapter

    owned = False
    if isinstance(generator, str | os.PathLike):
        from negopt.generator import NegOptGenerator

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


class _PerProcessState:
    """Makes an object's ``state_dict`` per process for accelerate's ``register_for_checkpointing`` (which writes
    one file, from the main process): the state holds every process's, and each process loads its own."""

    def __init__(self, obj, accelerator) -> None:
        self.obj = obj
        self.accelerator = accelerator

    def state_dict(self) -> dict:
        from accelerate.utils import gather_object

        state = self.obj.state_dict()
        states = gather_object([state]) if self.accelerator.num_processes > 1 else [state]
        return {"per_process": states}

    def load_state_dict(self, data: dict) -> None:
        states = data["per_process"]
        index = self.accelerator.process_index
        if len(states) != self.accelerator.num_processes:
            warnings.warn(
                f"the checkpoint holds the reward statistics of {len(states)} process(es), this run has "
                f"{self.accelerator.num_processes}; each process continues from process 0's.",
                UserWarning,
                stacklevel=2,
            )
            index = 0
        self.obj.load_state_dict(states[index])


def _save_adapter(model, name: str, folder: str) -> None:
    import shutil

    model.save_pretrained(folder, selected_adapters=[name], safe_serialization=True)
    if name != "default":  # peft writes any other adapter into a sub-folder named after it
        sub = os.path.join(folder, name)
        for f in os.listdir(sub):
            os.replace(os.path.join(sub, f), os.path.join(folder, f))
        shutil.rmtree(sub)


def _flat_config(cfg: RLConfig) -> dict[str, Any]:
    # Trackers (tensorboard's hparams) take scalars and strings only.
    import json

    out = {}
    for k, v in cfg.to_dict().items():
        out[k] = v if isinstance(v, int | float | str | bool) else json.dumps(v)
    return out
