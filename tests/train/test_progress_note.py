"""The progress bar carries the dev metric after each evaluation (and the best so far when it differs)."""

import torch
from toyloader import ToyLoader

from zhixing.models import build_model
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer


class Bar:
    def __init__(self):
        self.notes = []

    def progress(self, step, loss=None, lr=None, tokens_per_s=None, note=""):
        self.notes.append(note)

    def log(self, record):
        pass

    def message(self, text):
        pass


def test_dev_metric_in_the_progress_bar():
    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
    cfg = TrainConfig(device="cpu", progress=False, plots=False, eval_batches=2, num_threads=1, max_steps=4)
    trainer = Trainer(model, CausalLM(), cfg, ToyLoader(), ToyLoader())
    trainer._setup()
    bar = Bar()
    trainer._run_eval(bar)
    first = trainer._last_eval["val_loss"]
    assert bar.notes[-1] == f"dev val_loss {first:.4f}"
    trainer.best_value = first - 1.0  # a better (lower) loss seen earlier
    trainer._run_eval(bar)
    assert bar.notes[-1] == f"dev val_loss {trainer._last_eval['val_loss']:.4f} (best {first - 1.0:.4f})"
