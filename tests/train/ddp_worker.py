"""Run by test_distributed.py under torchrun: train the tiny GPT of the single-process run, data-parallel.

usage: torchrun --nproc_per_node=N ddp_worker.py OUT.json RUN_DIR STRATEGY BATCH_SIZE
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toyloader import ToyLoader  # noqa: E402

from zhixing.models import build_model
from zhixing.objectives import CausalLM  # noqa: E402
from zhixing.train import TrainConfig, Trainer  # noqa: E402
from zhixing.train import distributed as D  # noqa: E402

out, run_dir, strategy, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
info = D.setup("cpu")
torch.manual_seed(0)
model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
cfg = TrainConfig(device="cpu", dtype="float32", progress=False, tensorboard=False, plots=False,
                  log_interval=1, eval_batches=2, warmup_steps=2, lr=3e-3, max_steps=6, eval_interval=3,
                  batch_size=batch_size,
                  distributed=strategy)
loader = ToyLoader(batch_size=batch_size, ignore_frac=0.5, rank=info.rank, world_size=info.world_size)
val = ToyLoader(batch_size=batch_size, rank=info.rank, world_size=info.world_size)
trainer = Trainer(model, CausalLM(), cfg, loader, val, run=run_dir, dist=info)
summary = trainer.fit()
if info.is_main:
    Path(out).write_text(json.dumps({"history": trainer.history, "summary": summary}))
D.teardown()
