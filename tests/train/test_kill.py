"""kill -9 at chosen and at random moments (during a step, an evaluation, a checkpoint write, a best/
swap, between them), 20 seeded trials on a tiny model: every run resumes (train.resume=true) to the
uninterrupted run bit for bit — final weights, the loss history, best/ — and no trial leaves a run that
cannot be resumed or loaded (issue #22).

Each training session runs in a forked child that SIGKILLs itself at the chosen moment (a hook), so the
moments are exact and the test needs no second Python start-up per session."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from toyloader import ToyLoader

from zhixing.io import RunDir

STEPS = 12
CFG = dict(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1, eval_batches=2,
           eval_interval=2, save_interval=2, keep_last=2, warmup_steps=2, lr=3e-3, num_threads=1,
           max_steps=STEPS, resume=True)
MOMENTS = ["step", "eval", "checkpoint", "best_swap", "metrics", "random"]


def _train(run: Path, moment: str | None, count: int, delay: float) -> None:
    """One training session (in the child): resume if there is a checkpoint, die at the moment."""
    import zhixing.io as zio
    from zhixing.models import build_model
    from zhixing.objectives import CausalLM
    from zhixing.train import TrainConfig, Trainer
    from zhixing.train import checkpoint as ckpt
    from zhixing.train import logging as zlog

    torch.set_num_threads(1)
    seen = {"n": 0}

    def hit(name: str) -> None:
        if name == moment:
            seen["n"] += 1
            if seen["n"] == count:
                os.kill(os.getpid(), signal.SIGKILL)

    if moment == "random":
        signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGKILL))
        signal.setitimer(signal.ITIMER_REAL, delay)
    real_save = torch.save

    def save(obj, path, *a, **k):  # the optimizer file, in the middle of a checkpoint's files
        hit("checkpoint")
        return real_save(obj, path, *a, **k)

    ckpt.torch.save = save
    real_replace_dir = zio.replace_dir

    def replace_dir(tmp, final):  # between the two renames of swapping best/ in
        if final.name == "best" and final.exists():
            old = final.with_name(".old-best")
            os.replace(final, old)
            hit("best_swap")
            os.replace(tmp, final)
            import shutil

            shutil.rmtree(old)
            return
        real_replace_dir(tmp, final)

    zio.replace_dir = replace_dir
    real_log = zlog.RunLogger.log

    def log(self, record):
        real_log(self, record)
        hit("metrics")

    zlog.RunLogger.log = log

    class Val(ToyLoader):
        def eval_batches(self, n):
            for batch in super().eval_batches(n):
                hit("eval")
                yield batch

    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, num_layers=1, max_seq_len=32,
                        dropout=0.1)
    train = ToyLoader(batch_size=4, on_batch=lambda pos: hit("step"))
    Trainer(model, CausalLM(), TrainConfig(**CFG), train, Val(), run=run).fit()


def session(run: Path, moment: str | None = None, count: int = 1, delay: float = 0.0) -> int:
    """Run one session in a forked child; its exit status (-9 when killed)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            _train(run, moment, count, delay)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def outcome(run: Path) -> dict:
    from zhixing.models.base import read_safetensors

    rd = RunDir(run)
    last = rd.checkpoint(STEPS)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {"weights": read_safetensors(last / "model.safetensors"),
            "best": read_safetensors(rd.best / "model.safetensors"),
            "best_step": json.loads((rd.best / "best.json").read_text())["step"],
            "losses": [(r["step"], r["loss"]) for r in lines if r["kind"] == "train"],
            "evals": [(r["step"], r["val_loss"]) for r in lines if r["kind"] == "eval"],
            "summary": json.loads((run / "summary.json").read_text())}


def same(a: dict, b: dict) -> None:
    assert a["losses"] == b["losses"]
    assert a["evals"] == b["evals"]
    assert a["best_step"] == b["best_step"]
    for key in ("weights", "best"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert a["summary"]["status"] == b["summary"]["status"] == "completed"
    assert a["summary"]["run_id"] and a["summary"]["step"] == STEPS


def loadable_or_fresh(run: Path) -> None:
    """After a kill: the run loads (best/ or a checkpoint), or it holds no model yet."""
    import zhixing

    rd = RunDir(run)
    rd.clean_partial()  # what the next session does first (puts back a best/ cut in mid-swap)
    if rd.checkpoints() or (rd.best / "config.json").is_file():
        zhixing.load(run)


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_bit_identical(tmp_path):
    t0 = time.perf_counter()
    assert session(tmp_path / "reference") == 0
    reference = outcome(tmp_path / "reference")
    per_session = time.perf_counter() - t0
    rng = random.Random(22)
    killed: dict[str, int] = {}
    for trial in range(int(os.environ.get("KILL_TRIALS", 20))):
        moment = MOMENTS[trial % len(MOMENTS)]
        run = tmp_path / f"trial-{trial}"
        kills = 0
        for _ in range(4):  # up to 3 kills in one trial, then a session that completes
            if kills < rng.randint(1, 3):
                count = rng.randint(1, {"step": 12, "eval": 10, "checkpoint": 5, "best_swap": 3,
                                        "metrics": 16, "random": 1}[moment])
                code = session(run, moment, count, delay=rng.uniform(0.05, per_session))
                kills += 1
                if code == 0:  # the moment did not come before the end (e.g. a later count)
                    break
                assert code == -signal.SIGKILL, f"trial {trial} ({moment}): exit {code}"
                killed[moment] = killed.get(moment, 0) + 1
                loadable_or_fresh(run)
                continue
            assert session(run) == 0, f"trial {trial} ({moment}): the resumed session failed"
            break
        else:
            assert session(run) == 0
        same(outcome(run), reference)
    print(f"kills per moment: {killed}; {time.perf_counter() - t0:.0f} s")
    assert set(killed) == set(MOMENTS)  # every kind of moment was hit at least once
    assert time.perf_counter() - t0 < 600
