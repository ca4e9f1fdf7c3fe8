"""Fine-tuning tasks behind one `Task` protocol (tasks/base.py): classification, NER, extractive QA,
relation classification.

`TASKS` is the registry: name -> Task. A new task is a module ending in `TASK = Task(...)` and a line here.
"""

from zhixing.errors import ConfigError
from zhixing.tasks import classify, ner, qa, relation
from zhixing.tasks.base import FinetuneConfig, Task

TASKS: dict[str, Task] = {t.name: t for t in (classify.TASK, ner.TASK, qa.TASK, relation.TASK)}


def get_task(name: str) -> Task:
    """The task called `name`, or a ConfigError listing the known ones."""
    if name not in TASKS:
        from zhixing.config import nearest

        raise ConfigError(f"unknown task {name!r}{nearest(name, TASKS)}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def task_for_head(head: str) -> Task | None:
    """The task a model head serves (seq_cls -> classify, token_cls -> ner, qa -> qa), or None."""
    return next((t for t in TASKS.values() if t.head == head), None)


__all__ = ["TASKS", "Task", "FinetuneConfig", "get_task", "task_for_head"]
