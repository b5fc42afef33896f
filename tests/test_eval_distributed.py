"""``negopt eval`` under ``torchrun`` with two CPU processes (gloo): the same report as one process, the on-disk
cache shared, and a process that dies keeping the images it finished."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from negopt.eval.distributed import Processes, process_device
from tiny_clip import save_tiny_image_classifier, trained_tiny_clip
from tiny_pipelines import save_tiny_sd

HERE = os.path.dirname(os.path.abspath(__file__))
# Eight prompts, some with their own negative: conditions none, dataset and builtin. In batches of 2, process 0 takes
# batches 0 and 2 (prompts 0-1, 4-5), process 1 batches 1 and 3 (prompts 2-3, 6-7).
PROMPTS = [
    {"prompt": "a photo of red", "negative_prompt": "blurry"},
    {"prompt": "a portrait of an old fisherman", "negative_prompt": ""},
    {"prompt": "a photo of blue", "negative_prompt": "lowres, watermark"},
    {"prompt": "a pixel art castle", "negative_prompt": ""},
    {"prompt": "a photo of green", "negative_prompt": "jpeg artifacts"},
    {"prompt": "a watercolor of a fox", "negative_prompt": ""},
    {"prompt": "a photo of yellow", "negative_prompt": "noise"},
    {"prompt": "a black and white photo of a dog", "negative_prompt": ""},
]
CONDITIONS = ("none", "dataset", "builtin")

# One torch thread here, as in each torchrun process (OMP_NUM_THREADS=1): CPU kernels can round differently on
# another number of threads, and the reports are compared to the last bit.
pytestmark = pytest.mark.usefixtures("one_thread")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(HERE), "src"), HERE, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    return subprocess.run([*cmd, *args], env=_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from negopt.rewards import AestheticMLP

    root = tmp_path_factory.mktemp("dist")
    _, _, clip_dir = trained_tiny_clip(root / "clip", steps=10)
    torch.manual_seed(0)
    AestheticMLP(embed_dim=16).eval().save_pretrained(root / "head")
    prompts = root / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(p) for p in PROMPTS), encoding="utf-8")
    return {
        "sd": save_tiny_sd(root / "sd"),
        "clip": clip_dir,
        "head": str(root / "head"),
        "vit": save_tiny_image_classifier(root / "vit"),
        "prompts": str(prompts),
    }


def _eval_args(folders, out) -> list[str]:
    # Scoring chunks of 3 do not line up with the batches of 2, and the last one is short.
    return [
        "eval", "--pipeline", folders["sd"], "--prompts", folders["prompts"], "--output-dir", str(out), "--steps", "2",
        "--batch-size", "2", "--score-batch-size", "3", "--bootstrap", "50", "--clip-model", folders["clip"],
        "--aesthetic-clip-model", folders["clip"], "--aesthetic-head", folders["head"], "--inception-model",
        folders["vit"], "--local-files-only",
    ]  # fmt: skip


def _pngs(out) -> dict[str, int]:
    """Relative path -> modification time of every finished image of the cache."""
    root = os.path.join(out, "images")
    found = {}
    for condition in os.listdir(root):
        for name in os.listdir(os.path.join(root, condition)):
            if name.endswith(".png") and not name.endswith(".tmp.png"):
                found[f"{condition}/{name}"] = os.stat(os.path.join(root, condition, name)).st_mtime_ns
    return found


def test_two_processes_write_the_one_process_report_and_resume_what_a_dead_process_left(folders, tmp_path, capsys):
    from negopt.cli import main

    assert main(_eval_args(folders, tmp_path / "one")) == 0
    capsys.readouterr()
    one = json.loads((tmp_path / "one" / "report.json").read_text(encoding="utf-8"))

    # Two processes; process 1 dies on prompt 6, after its batch of prompts 2-3 and before the builtin images of 6-7.
    out = tmp_path / "two"
    died = _torchrun(
        os.path.join(HERE, "eval_worker.py"), folders["sd"], folders["prompts"], str(out), PROMPTS[6]["prompt"]
    )
    assert died.returncode != 0 and "this process dies on 'a photo of yellow'" in died.stderr
    left = _pngs(out)
    indices = {c: {int(p.split("/")[1][:5]) for p in left if p.startswith(c + "/")} for c in CONDITIONS}
    assert all({2, 3} <= indices[c] for c in CONDITIONS)  # its finished batch is on disk, in every condition
    assert not {6, 7} & indices["builtin"]  # the batch it died in has no builtin images
    assert not (out / "report.json").exists()

    # `negopt eval` under torchrun on the same folder: it renders only what is missing, and writes the same report.
    done = _torchrun("-m", "negopt", *_eval_args(folders, out))
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("| none |") == 1  # one report, printed by the main process
    two = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert two == one
    after = _pngs(out)
    assert len(after) == len(PROMPTS) * len(CONDITIONS)
    assert all(after[p] == t for p, t in left.items())  # nothing finished before was rendered again
    assert sorted(after) == sorted(os.path.relpath(os.path.join(out, p), out / "images").replace(os.sep, "/")
                                   for c in CONDITIONS for p in two["per_prompt"][c]["images"])  # fmt: skip


def test_one_process_does_not_touch_torch_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    processes = Processes()
    assert processes.state is None and processes.num_processes == 1 and processes.is_main_process
    assert processes.share([1, 2, 3]) == [1, 2, 3] and processes.gather("x") == ["x"]
    assert processes.broadcast({"a": 1}) == {"a": 1}
    assert not torch.distributed.is_initialized()


def test_round_robin_share_and_per_process_device(monkeypatch):
    processes = Processes()
    processes.num_processes, processes.process_index = 3, 1
    assert processes.share(list(range(8))) == [1, 4, 7]
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert process_device("cuda") == "cuda:5"
    assert process_device("cuda:2") == "cuda:2" and process_device("cpu") == "cpu" and process_device(None) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert process_device("cuda") == "cuda"
