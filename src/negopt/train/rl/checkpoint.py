"""What the RL trainer writes: its checkpoints ``output_dir/checkpoints/step-N`` and the trained generator.

A checkpoint is written into a hidden temporary folder beside the others and renamed into place when every file is
there, so a run killed mid-write leaves no half checkpoint that a resume could pick. Its contents are accelerate's
``save_state`` (optimizer, scheduler, every process's RNG state, a normalising reward's statistics) with the adapter
weights (safetensors) in place of the model, and ``trainer_state.json`` (the step and counters), written last.

The trained generator (:func:`save_generator`) is the adapter, the tokenizer and ``negopt_config.json``, for
``NegOptGenerator.from_pretrained``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from typing import Any

from negopt.train.checkpointing import CHECKPOINTS_DIR, numbered_folders

TRAINER_STATE_NAME = "trainer_state.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def checkpoint_path(output_dir: str | os.PathLike, step: int) -> str:
    """The folder of the checkpoint taken after ``step`` steps."""
    return os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR, f"step-{step}")


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """The complete checkpoints under ``output_dir``, oldest first, as ``(step, path)``."""
    root = os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR)
    return [
        (step, path)
        for step, path in numbered_folders(root, "step-")
        if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME))
    ]


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete checkpoint under ``output_dir``, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def temporary_checkpoint_path(output_dir: str | os.PathLike, step: int) -> str:
    """The hidden folder the checkpoint of ``step`` is written into before it is renamed into place."""
    return os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR, f".tmp-step-{step}")


def begin_checkpoint(output_dir: str | os.PathLike, step: int) -> str:
    """Create (empty) the temporary folder a checkpoint is written into; main process only."""
    tmp = temporary_checkpoint_path(output_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def commit_checkpoint(tmp: str, output_dir: str | os.PathLike, step: int, save_total_limit: int | None) -> str:
    """Rename the finished temporary folder into place and drop the oldest beyond ``save_total_limit``."""
    final = checkpoint_path(output_dir, step)
    if os.path.exists(final):
        # A resumed run that saves the same step again: move the old one aside first, so that at every moment
        # one complete step-N exists.
        trash = final + ".old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if save_total_limit is not None:
        for _, path in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(path, ignore_errors=True)
    return final


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------------- with accelerate
def save_checkpoint(
    accelerator: Any, output_dir: str | os.PathLike, step: int, state: dict, save_total_limit: int | None
) -> str:
    """Write ``output_dir/checkpoints/step-N`` (atomically) on every process together and return its path.

    accelerate's ``save_state`` writes the optimizer, the registered objects and every process's RNG state (the
    hooks of :func:`register_adapter_hooks` put the adapter in place of the model); ``state`` becomes
    ``trainer_state.json``, written last.
    """
    tmp = temporary_checkpoint_path(output_dir, step)
    if accelerator.is_main_process:
        begin_checkpoint(output_dir, step)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    final = checkpoint_path(output_dir, step)
    if accelerator.is_main_process:
        # trainer_state.json last: its presence marks the folder complete.
        write_json(os.path.join(tmp, TRAINER_STATE_NAME), state)
        commit_checkpoint(tmp, output_dir, step, save_total_limit)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: str | os.PathLike) -> dict:
    """Restore everything :func:`save_checkpoint` wrote into the run and return its ``trainer_state.json``.

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint.
    """
    path = os.fspath(path)
    state_file = os.path.join(path, TRAINER_STATE_NAME)
    if not os.path.isfile(state_file):
        raise FileNotFoundError(
            f"resume_from_checkpoint={path!r} is not a complete checkpoint (no {TRAINER_STATE_NAME}); pass "
            "a folder under output_dir/checkpoints or resume=True for the newest one."
        )
    data = read_json(state_file)
    accelerator.load_state(path)
    return data


def register_adapter_hooks(accelerator: Any, policy: Any, adapter_name: str) -> None:
    """Make accelerate's ``save_state`` / ``load_state`` write and read the trained adapter alone (safetensors),
    not the whole model."""

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        weights.clear()
        if accelerator.is_main_process:
            save_adapter(policy, adapter_name, output_dir)

    def load_hook(models: list, input_dir: str) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        models.clear()
        weights = load_file(os.path.join(input_dir, ADAPTER_WEIGHTS_NAME), device=str(accelerator.device))
        result = set_peft_model_state_dict(policy, weights, adapter_name=adapter_name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            raise ValueError(
                f"checkpoint {input_dir} does not match this model's adapter: unexpected keys {unexpected[:3]}"
            )

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


class PerProcessState:
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


# ---------------------------------------------------------------------------------------------------- the generator
def save_generator(
    accelerator: Any, policy: Any, adapter_name: str, tokenizer: Any, generator_config: Any, output_dir: str
) -> str:
    """Save the trained generator (LoRA adapter, tokenizer, ``negopt_config.json``) into ``output_dir`` for
    ``NegOptGenerator.from_pretrained``, on every process together; returns the folder."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        save_adapter(policy, adapter_name, output_dir)
        tokenizer.save_pretrained(output_dir)
        cfg = copy.deepcopy(generator_config)
        base = policy.peft_config[adapter_name].base_model_name_or_path
        if base:
            cfg.base_model_name_or_path = base
        else:
            warnings.warn(
                "the generator's base model has no name or path (it was built in memory), so the saved adapter "
                f"in {output_dir} cannot find its base model. Save the base model and load it from that folder "
                "first.",
                UserWarning,
                stacklevel=3,  # the caller of RLTrainer.save_model
            )
        cfg.save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    return output_dir


def save_adapter(model: Any, name: str, folder: str) -> None:
    """Write the peft adapter ``name`` of ``model`` (safetensors) straight into ``folder``, whatever its name."""
    model.save_pretrained(folder, selected_adapters=[name], safe_serialization=True)
    if name != "default":  # peft writes any other adapter into a sub-folder named after it
        sub = os.path.join(folder, name)
        for f in os.listdir(sub):
            os.replace(os.path.join(sub, f), os.path.join(folder, f))
        shutil.rmtree(sub)
