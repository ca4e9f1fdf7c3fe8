"""`zhixing distill`: train a smaller student from a teacher (knowledge distillation)."""

from __future__ import annotations

import click

EPILOG = """\b
Examples:
  zhixing distill --task classify --teacher runs/sst2-teacher --student layers=0,2,4 \\
      --train sst2/train.tsv --dev sst2/dev.tsv temperature=2 alpha=0.5 epochs=2 max_seq_len=64 name=sst2-l3
  zhixing distill --task classify --teacher runs/sst2-teacher --student dim=192,num_heads=4,num_layers=3 \\
      --train sst2/train.tsv --dev sst2/dev.tsv hidden_weight=1 attn_weight=1 train.lr=1e-4
  zhixing distill --task lm --teacher runs/gpt --student layers=0,3 --corpus input.txt \\
      temperature=2 train.max_steps=1000
\b
Students: layers=0,2,4 (copies of those teacher layers, with its embeddings and head), every-other, a
narrower random model (dim=...,num_heads=...,num_layers=...,ffn_dim=...), or a model directory with the
teacher's vocabulary.
Keys: distillation (temperature, alpha, kd_weight, hidden_weight, attn_weight, cos_weight, layer_map,
teacher_cache), task settings (epochs, max_seq_len, ...; lm: block_size, val_fraction), train.* (the loop)
and name=.
"""


def split_keys(task: str, items: tuple[str, ...]
               ) -> tuple[dict[str, str], dict[str, str], list[str], str | None]:
    """key=value items -> (distillation settings, task settings, train.* overrides, name)."""
    from zhixing.cli.finetune import train_item
    from zhixing.config import nearest
    from zhixing.tasks import get_task
    from zhixing.tasks.distill import DistillConfig, LMDistillConfig
    from zhixing.train.config import TrainConfig

    own = [k for k in (LMDistillConfig if task == "lm" else DistillConfig).field_names()
           if k not in ("teacher", "student", "corpus")]
    task_keys = [] if task == "lm" else [k for k in get_task(task).config.field_names()
                                         if k not in ("task", "model", "train", "dev", "test")]
    mine, settings, train, name = {}, {}, [], None
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected key=value, e.g. temperature=2 or train.lr=1e-4")
        key, value = (s.strip() for s in item.split("=", 1))
        if key == "name":
            name = value
        elif key.startswith("train."):
            train.append(train_item(key, value))
        elif key in own:
            mine[key] = value
        elif key in task_keys:
            settings[key] = value
        else:
            hint = (f" (did you mean 'train.{key}'?)" if key in TrainConfig.field_names()
                    else nearest(key, own + task_keys))
            raise click.ClickException(f"unknown key {key!r}{hint}; distill takes {', '.join(own)}"
                                       + (f", the task's {', '.join(task_keys)}" if task_keys else "")
                                       + " and train.* keys")
    return mine, settings, train, name


@click.command("distill", epilog=EPILOG)
@click.option("--task", type=click.Choice(["classify", "lm"]), required=True)
@click.option("--teacher", required=True, help="The teacher: a fine-tuned run (classify) or a GPT (lm).")
@click.option("--student", default="every-other", show_default=True,
              help="layers=0,2,4 | every-other | dim=...,num_heads=...,num_layers=... | a model directory.")
@click.option("--train", "train_file", default="", help="classify: training file.")
@click.option("--dev", "dev_file", default="", help="classify: development file (model selection).")
@click.option("--corpus", default="", help="lm: the text to distill on (file, glob or built-in name).")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def distill_cmd(task: str, teacher: str, student: str, train_file: str, dev_file: str, corpus: str,
                overrides: tuple[str, ...]) -> None:
    """Distill TEACHER into a smaller student: soft targets at temperature T plus the hard labels.

    Writes runs/<name>/ (best/ = the best dev student; task.json and distill.json the settings) and
    prints the student's dev metrics (lm: its held-out loss) and its size next to the teacher's.
    """
    mine, settings, train, name = split_keys(task, overrides)
    if task == "lm":
        if train_file or dev_file:
            raise click.UsageError("--task lm reads --corpus (its tail is held out), not --train/--dev")
        if not corpus:
            raise click.UsageError("--task lm needs --corpus FILE")
        from zhixing.tasks.distill import LMDistillConfig, distill_lm

        cfg = LMDistillConfig.from_dict({**mine, "teacher": teacher, "student": student, "corpus": corpus},
                                        source="distill")
        summary = distill_lm(cfg, name=name or "distill-lm", train_overrides=train)
        loss = summary.get("best_val_loss", summary.get("final_val_loss"))
        click.echo(f"student: held-out loss {loss:.4f}" if loss is not None else "student: not evaluated")
    else:
        if not train_file or not dev_file:
            raise click.UsageError("--task classify needs --train FILE and --dev FILE")
        from zhixing.tasks import get_task
        from zhixing.tasks.distill import DistillConfig, distill

        dcfg = DistillConfig.from_dict({**mine, "teacher": teacher, "student": student}, source="distill")
        cfg = get_task(task).settings({**settings, "model": teacher, "train": train_file, "dev": dev_file},
                                      source="distill")
        summary = distill(dcfg, cfg, name=name or f"distill-{task}", train_overrides=train)
        text = ", ".join(f"{k} {v:.4f}" for k, v in summary["dev"].items() if isinstance(v, float))
        click.echo(f"dev: {text}")
    info = summary["distill"]
    click.echo(f"student parameters {info['student_parameters']:,} "
               f"({info['student_parameters'] / info['teacher_parameters']:.1%} of the teacher's)")
    click.echo(f"run: {summary['run_dir']}")
