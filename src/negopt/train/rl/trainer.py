"""The RL trainer (NegOpt's second stage): the loop, the update, logging and saving.

The loop, one step:

1. take ``batch_size`` prompts (each process its share) and sample ``num_candidates`` negatives for each from the
   policy (the generator with a LoRA adapter), from exactly the distribution whose log-probs the update uses;
2. make one image per negative, every image of a prompt from the same seed, so that reward differences come from
   the negative prompt and not from the noise (optionally one more image with the negative omitted, as a baseline);
3. score the images with the reward;
4. turn rewards into advantages within each prompt's group and take a policy-gradient step (the maths is in
   :mod:`negopt.train.rl.objective`), optionally PPO-style over several epochs, with a KL penalty to the starting
   policy.

Steps 1-3 (and the policy, the reference and the log-probs of sampled tokens) are
:class:`negopt.train.rl.rollout.RolloutSampler`'s; checkpoints and the saved generator are
:mod:`negopt.train.rl.checkpoint`'s.

trl cannot train encoder-decoder models, so this loop is ours, on accelerate and peft; it trains seq2seq (T5, BART)
and causal (GPT-2 style) generators alike.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from negopt.train.checkpointing import SigtermFlag, check_output_dir
from negopt.train.rl import checkpoint as ckpt
from negopt.train.rl import objective as objective
from negopt.train.rl.config import RLConfig, RLTrainerState
from negopt.train.rl.rollout import Rollout, RolloutSampler, build_policy, load_pipeline

logger = logging.getLogger(__name__)

__all__ = ["RLTrainer"]

# Pixel size of each image in the sample grids under output_dir/samples.
SAMPLE_CELL_SIZE = 256


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
    Sampling, images, rewards and token log-probs are ``trainer.sampler``'s (a
    :class:`~negopt.train.rl.rollout.RolloutSampler`).
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

        self.prompts = _load_prompts(prompts)
        self.model, self.tokenizer, self.generator_config, self.adapter_name, has_reference = build_policy(
            generator, config
        )
        self.pipeline = load_pipeline(pipeline, config, self.accelerator.device)
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
            self.accelerator.register_for_checkpointing(ckpt.PerProcessState(reward, self.accelerator))
        ckpt.register_adapter_hooks(self.accelerator, self._policy, self.adapter_name)
        self.state = RLTrainerState()
        self.log_history: list[dict[str, float]] = []
        self.last_timings: dict[str, float] = {}
        self._sigterm = SigtermFlag()
        self.sampler = RolloutSampler(
            config,
            self.accelerator,
            self._policy,
            self.tokenizer,
            self.generator_config,
            self.pipeline,
            reward,
            self.prompts,
            has_reference=has_reference,
        )
        self.generation_config = self.sampler.generation_config

    # ------------------------------------------------------------------------------------------------ set-up
    @property
    def _policy(self):
        """The peft model itself (no DDP wrapper): for sampling, adapters and saving."""
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------------------ the update
    def _update(self, rollout: Rollout, logp, old, ref, adv, weight, global_weight: float) -> dict[str, float]:
        """``ppo_epochs`` passes of :func:`~negopt.train.rl.objective.policy_loss`; ``logp`` is the first pass's."""
        cfg = self.config
        tmask = rollout.response_mask.float()
        stats = {"loss": 0.0, "clipped": 0.0, "clip_tokens": 0.0}
        for epoch in range(cfg.ppo_epochs):
            if epoch:
                logp = self.sampler.token_logprobs(self.model, rollout)
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
        rollout = self.sampler.sample(step)
        timings["sample"], t = _now() - t, _now()
        self.sampler.make_images(rollout, step)
        timings["images"], t = _now() - t, _now()
        rewards, baseline, terms = self.sampler.score(rollout)
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
        ref = self.sampler.ref_logprobs(rollout) if cfg.kl_coef > 0 else None
        logp = self.sampler.token_logprobs(self.model, rollout)  # the first pass, before any update: the sampler's
        old = logp.detach()
        # Rewards in units of their within-prompt spread (objective's docstring), so that the KL penalty, the
        # advantages and the loss mean the same whatever the reward's units.
        spread = self._reduce(objective.reward_moments(rewards, cfg.num_candidates))
        scale = self._reward_scale(spread)
        scored = rewards / scale
        kl_seq = None
        if ref is not None:
            kl_seq = objective.sequence_kl(old, ref, tmask, cfg.kl_mode).cpu()
            if cfg.kl_mode == "reward":
                scored = objective.penalized_rewards(rewards, old.cpu(), ref.cpu(), tmask.cpu(), cfg.kl_coef, scale)
        base = baseline / scale if baseline is not None else None  # the no-negative image's reward, same units
        adv, weight, skipped = objective.group_advantages(scored, cfg.num_candidates, cfg.advantage, base)
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
            "reward_scale": scale,
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
        return ckpt.save_generator(
            self.accelerator, self._policy, self.adapter_name, self.tokenizer, self.generator_config, out
        )

    def save_checkpoint(self) -> str:
        """Write ``output_dir/checkpoints/step-N`` (atomically) and return its path.

        accelerate's ``save_state`` writes the optimizer, the learning-rate schedule, every process's RNG state and a
        normalising reward's statistics; the trained adapter (safetensors) is written by a hook instead of the whole
        model; ``trainer_state.json`` comes last. All of it goes into a hidden temporary folder that is renamed into
        place when complete, so a kill never leaves a half checkpoint.
        """
        acc, cfg = self.accelerator, self.config
        state = dataclasses.asdict(self.state)
        state.update(num_processes=acc.num_processes, adapter_name=self.adapter_name)
        return ckpt.save_checkpoint(acc, cfg.output_dir, self.state.step, state, cfg.save_total_limit)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore adapter weights, optimizer, scheduler, RNG, the reward's statistics and state from a checkpoint."""
        data = ckpt.load_checkpoint(self.accelerator, path)
        known = {f.name for f in dataclasses.fields(RLTrainerState)}
        self.state = RLTrainerState(**{k: v for k, v in data.items() if k in known and k != "interrupted"})
        logger.info("resumed from %s at step %d", os.fspath(path), self.state.step)

    def _save_samples(self, rollout: Rollout, rewards: torch.Tensor, baseline, step: int) -> None:
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
    def _reward_scale(self, spread: list[float]) -> float:
        """This step's ``s`` from the running averages of the steps before it (this step's own while there are none),
        then fold this step's ``[ss, dof, sum_sq, count]`` (all processes) into them."""
        ss, dof, sum_sq, count = spread
        st = self.state
        variance, mean_square = (ss / dof, sum_sq / count) if dof else (None, None)
        if st.reward_var_ema is None:
            scale = objective.reward_scale(variance, mean_square)
        else:
            scale = objective.reward_scale(st.reward_var_ema, st.reward_sq_ema)
        # The averages start at the first step whose groups differ at all: a start where every candidate scores the
        # same (a reward still at 0) would otherwise pull the scale towards 0 for a dozen steps.
        if variance is not None and (st.reward_var_ema is not None or variance > 0):
            st.reward_var_ema = objective.running_average(st.reward_var_ema, variance)
            st.reward_sq_ema = objective.running_average(st.reward_sq_ema, mean_square)
        return scale

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


def _load_prompts(prompts) -> list[str]:
    """The training prompts, read by :func:`negopt.data.load_prompts` with the held-out rule of ``negopt train rl``:
    every prompt of a list, a dataset object or a ``.txt`` file; only the ``train`` split's (of
    :func:`negopt.data.split_of`) of any other file or a hub id, so that NegOpt's validation and test prompts stay
    out of RL."""
    from negopt.data import load_prompts

    listed = not isinstance(prompts, str | os.PathLike) or os.fspath(prompts).lower().endswith(".txt")
    return load_prompts(prompts, split=("train",), heldout_split=None if listed else "train")


def _flat_config(cfg: RLConfig) -> dict[str, Any]:
    # Trackers (tensorboard's hparams) take scalars and strings only.
    import json

    out = {}
    for k, v in cfg.to_dict().items():
        out[k] = v if isinstance(v, int | float | str | bool) else json.dumps(v)
    return out
