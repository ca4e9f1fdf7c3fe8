"""The layers of docs/architecture.md, checked on the code: every import of every zhixing module (lazy ones
inside functions included; `if TYPE_CHECKING:` blocks excluded) goes to its own package or a lower layer,
and the module import graph has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "zhixing"

# Lowest first. Packages on one line are side by side: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("io",),
    ("config",),
    ("device", "nn", "tokenizers"),
    ("models", "data"),
    ("interop", "ngram", "quant"),
    ("peft",),
    ("hub",),
    ("objectives",),
    ("train",),
    ("generation", "tasks", "viz", "compress"),
    ("recipes", "serve", "prompts"),
    ("apps",),
    ("cli",),
    ("", "__main__"),  # zhixing/__init__.py: the public face, may use everything (lazily); python -m zhixing
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit of a module: its first component below zhixing ("" for zhixing itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> set[str]:
    """zhixing modules imported anywhere in the file, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "zhixing")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "zhixing":
                continue
            # `from zhixing.tasks import classify` imports the module classify; `from zhixing.tasks import
            # TASKS` takes a name from the package's __init__
            names_from_package = False
            for a in node.names:
                candidate = f"{target}.{a.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or \
                        (ROOT.parent / candidate.replace(".", "/") / "__init__.py").is_file():
                    found.add(candidate)
                else:
                    names_from_package = True
            if names_from_package:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_package_has_a_layer():
    units = {unit(m) for m in graph()}
    assert units <= set(RANK), f"packages without a layer in docs/architecture.md: {units - set(RANK)}"


def test_imports_only_go_down():
    bad = []
    for module, targets in graph().items():
        here = unit(module)
        for target in targets:
            there = unit(target)
            if there != here and RANK[there] >= RANK[here]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports that go up or sideways:\n  " + "\n  ".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    # a package's __init__ is imported whenever one of its modules is: count those edges too
    edges = {m: {t for t in ts if t in g and t != m} for m, ts in g.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_the_training_loop_names_no_model_family():
    for path in (ROOT / "train").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for family in ('"gpt"', '"bert"', '"transformer"'):
            assert family not in text, f"{path} names the model family {family}"
