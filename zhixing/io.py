"""Files that are never half-written, and the run directory every layer reads and writes.

Atomic writing: a file is written to a temporary name in its own directory and renamed over the
target (`os.replace` is atomic on one file system), so a reader sees the old content or the new one,
never a mix, and a crash or a full disk leaves the old file whole. A directory (a checkpoint, best/)
is assembled under a temporary name and swapped in when complete (`staged_dir`); files that join an
existing directory (a model saved next to other files) are staged together and moved in one by one
only when all were written (`staged_files`).

The run directory (DESIGN.md §3), the one place that knows its layout:

    runs/<name>/
        run.json                the run's id: every checkpoint, best.json and summary.json repeat it
        config.yaml  task.json  metrics.jsonl  summary.json  tb/  plots/
        checkpoints/step-N/     model + tokenizer + optimizer.pt + trainer_state.json
        best/                   the best model (+ tokenizer), best.json
    runs/.<name>.lock           held (pid, host) while a process trains into runs/<name>/

A run directory belongs to one run: `start_fresh` moves everything of an earlier run aside (one rename)
before a new run writes anything, and `lock` keeps a second process out while one trains.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError, TrainingError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's own 0600 is too private
DIR_MODE = 0o777 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to write a temporary file next to `path`, then rename it over `path`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8, "\\n" line ends) so that readers see the old content or the new one."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def read_json_object(path: str | os.PathLike, missing_hint: str = "") -> dict[str, Any]:
    """A JSON file that must hold an object; errors name the file (and line) and what was expected."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing{'; ' + missing_hint if missing_hint else ''}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a JSON object") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the finished directory `tmp` to `final`; an existing `final` is replaced only now, after
    `tmp` is complete (moved aside as `.old-<name>` for the instant between the two renames)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty `.tmp-<name>` directory beside `final`; when the block ends without an error it
    becomes `final` (replacing the old one), otherwise it is removed and `final` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_files(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory inside `directory`; the files written there are moved into
    `directory` when the block ends without an error. On an error nothing is moved (files already in
    `directory` stay as they were) and a `directory` this call created is removed again."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".writing-"))
    try:
        yield tmp
        for path in sorted(tmp.iterdir()):
            if path.is_file():
                os.chmod(path, FILE_MODE)
            os.replace(path, directory / path.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


# -- the run directory ---------------------------------------------------------------------------------

STEP_DIR = re.compile(r"^step-(\d+)$")


class RunDir:
    """The layout of one run directory: every path, lookup and small record of `runs/<name>/`.

    Training, fine-tuning, loading, generation and serving all go through it, so the layout is written
    down once. It holds no open files; methods read or write when called.
    """

    CONFIG = "config.yaml"
    RUN = "run.json"
    TASK = "task.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"

    def __init__(self, path: str | os.PathLike, *, tokenizer: Any = None,
                 config: dict[str, Any] | None = None, records: dict[str, Any] | None = None):
        """`tokenizer` (anything with `save(directory)`) is saved next to every model the run writes;
        `config` (the recipe or settings, written as config.yaml) and `records` (file name -> JSON-able,
        e.g. task.json) are written by the training loop when the run starts."""
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.config = config
        self.records = dict(records or {})

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def run_file(self) -> Path:
        return self.path / self.RUN

    @property
    def lock_file(self) -> Path:
        """Beside the run directory (not in it), so moving an old run aside keeps the lock in place."""
        return self.path.parent / f".{self.path.name}.lock"

    @property
    def task_file(self) -> Path:
        return self.path / self.TASK

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step}"

    # -- lookups -------------------------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first (unfinished `.tmp-*` directories are not listed)."""
        root = self.checkpoints_dir
        if not root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in root.iterdir()
                 if p.is_dir() and (m := STEP_DIR.match(p.name))]
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def model_dir(self) -> Path:
        """The directory holding the run's model: best/, else the newest checkpoints/step-N/."""
        if (self.best / "config.json").is_file():
            return self.best
        for _, p in reversed(self.checkpoints()):
            if (p / "config.json").is_file():
                return p
        raise FileNotFoundError(
            f"{self.path}: no config.json here, nor in best/ or checkpoints/step-N/; a model directory "
            "holds config.json + model.safetensors (written by save_pretrained, to_hf or transformers)")

    @classmethod
    def containing(cls, path: str | os.PathLike) -> RunDir | None:
        """The run a path belongs to: the run directory itself, or the run of its best/ or
        checkpoints/step-N/ model directory; None for a model directory outside any run."""
        p = Path(path)
        candidates = [p]
        if p.name == "best":
            candidates.append(p.parent)
        if STEP_DIR.match(p.name) and p.parent.name == "checkpoints":
            candidates.append(p.parent.parent)
        for c in candidates:
            if (c / cls.CONFIG).is_file() or (c / cls.TASK).is_file() or (c / cls.SUMMARY).is_file() \
                    or (c / cls.RUN).is_file() \
                    or (c / "checkpoints").is_dir() or (c / "best").is_dir():
                return cls(c)
        return None

    # -- small records -------------------------------------------------------------------------------
    def read_summary(self) -> dict[str, Any] | None:
        """summary.json (written when a run ends), or None when absent."""
        if not self.summary_file.is_file():
            return None
        return read_json_object(self.summary_file)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(self.summary_file, jsonable(summary))

    def read_task(self) -> dict[str, Any] | None:
        """task.json (the settings of a fine-tuning run), or None when absent."""
        if not self.task_file.is_file():
            return None
        return read_json_object(self.task_file)

    # -- one run per directory -----------------------------------------------------------------------
    @staticmethod
    def new_run_id() -> str:
        return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]

    def run_id(self) -> str | None:
        """The id of the run this directory holds (run.json), or None when it holds none yet."""
        if not self.run_file.is_file():
            return None
        value = read_json_object(self.run_file).get("run_id")
        return value if isinstance(value, str) and value else None

    def write_run_id(self, run_id: str) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(self.run_file, {"run_id": run_id, "name": self.name})

    def holds_run(self) -> bool:
        """Whether the directory holds something worth keeping: a step checkpoint or a best/ model."""
        return bool(self.checkpoints()) or self.best.is_dir()

    def start_fresh(self) -> Path | None:
        """Make the directory empty for a new run: whatever an earlier run left (checkpoints, best/,
        summary, metrics, config) is moved aside in one rename, then deleted, so no file of the old run
        can mix with the new one and a crash in between leaves either the old run whole or none of it.
        Returns the path the old run was moved to while being deleted (None when there was nothing)."""
        if not self.path.exists() or not any(self.path.iterdir()):
            self.path.mkdir(parents=True, exist_ok=True)
            return None
        aside = self.path.with_name(f".{self.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(self.path, aside)
        self.path.mkdir(parents=True)
        shutil.rmtree(aside, ignore_errors=True)
        return aside

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock file (pid and host inside) while the block runs.

        The lock is an advisory `flock` on `runs/.<name>.lock`: the kernel drops it when the holder dies
        (even by kill -9), so a lock file left by a dead process is taken over (said on stdout, with the
        dead pid) and a live holder is named in the error."""
        import fcntl

        path = self.lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = _lock_holder(path)
                raise TrainingError(
                    f"{self.path} is in use by {holder} (lock {path}); wait for that run to end or stop it, "
                    "or train into another name=..."
                ) from None
            try:  # the file may have been removed (by a holder releasing it) between open and flock
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
            if previous:
                print(f"{path}: taking over a stale lock ({_describe(previous)}: that process is gone)",
                      flush=True)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def clean_partial(self) -> None:
        """Remove what an interrupted save left behind (`.tmp-*`, `.old-*`); complete checkpoints stay.
        A process killed between the two renames of a swap (`replace_dir`) left the old directory as
        `.old-<name>` and no `<name>`: it is put back. An old run that `start_fresh` moved aside but did not
        finish deleting is deleted."""
        for root in (self.path, self.checkpoints_dir):
            if root.is_dir():
                for p in root.iterdir():
                    if p.is_dir() and p.name.startswith(".old-") and not (root / p.name[5:]).exists():
                        os.replace(p, root / p.name[5:])
                    elif p.is_dir() and p.name.startswith((".tmp-", ".old-")):
                        shutil.rmtree(p, ignore_errors=True)
        if self.path.parent.is_dir():
            for p in self.path.parent.glob(f".{self.name}.replaced-*"):
                shutil.rmtree(p, ignore_errors=True)

    def prune_checkpoints(self, keep_last: int) -> None:
        """Delete all but the newest `keep_last` step checkpoints."""
        for _, old in self.checkpoints()[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def _describe(text: str) -> str:
    try:
        owner = json.loads(text)
        return f"pid {owner['pid']} on {owner['host']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return _describe(text) if text.strip() else "another process (starting up)"


def model_directory(path: str | os.PathLike) -> Path:
    """The directory holding config.json: `path` itself, or the model of the run directory `path`."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    return RunDir(p).model_dir()


def jsonable(obj: Any) -> Any:
    """Plain JSON values for records that may hold NumPy scalars / arrays or tensors (duck-typed, so
    this module needs neither): lists and numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays / scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "read_json_object", "replace_dir",
           "staged_dir", "staged_files", "RunDir", "model_directory", "jsonable", "STEP_DIR"]
