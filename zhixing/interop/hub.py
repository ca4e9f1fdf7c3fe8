"""Where a model lives: a model directory, a run directory, or a Hugging Face Hub id.

Used by `zhixing.load` / `zhixing.load_tokenizer` and the `convert` command. A Hub id is fetched with
`huggingface_hub` when it is installed and the network is reachable; offline (HF_HUB_OFFLINE=1, no
network) the call fails at once with a message saying so, and never waits on a download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# "gpt2", "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _step(path: Path) -> int:
    m = re.fullmatch(r"step-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def model_directory(directory: Path) -> Path:
    """The directory holding config.json: `directory` itself, or for a run directory (runs/<name>/) its
    `best/`, else its last `checkpoints/step-N/`."""
    if (directory / "config.json").is_file():
        return directory
    if (directory / "best" / "config.json").is_file():
        return directory / "best"
    steps = sorted((p for p in (directory / "checkpoints").glob("step-*") if (p / "config.json").is_file()),
                   key=_step)
    if steps:
        return steps[-1]
    raise FileNotFoundError(
        f"{directory}: no config.json here, nor in best/ or checkpoints/step-N/; a model directory holds "
        "config.json + model.safetensors (written by save_pretrained, to_hf or transformers)")


def resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    """(model directory, the directory the user named) for a local path or a Hub id."""
    p = Path(path).expanduser()
    if p.is_dir():
        return model_directory(p), p
    if p.exists():
        raise NotADirectoryError(f"{p}: is a file; pass the directory that holds config.json")
    name = str(path)
    if not HUB_ID.match(name):
        raise FileNotFoundError(f"{name}: no such directory")
    d = download(name)
    return d, d


def download(repo_id: str) -> Path:
    """Fetch config, weights and tokenizer files of a Hub model (safetensors preferred), or fail fast."""
    where = f"{repo_id}: no such local directory, and as a Hugging Face Hub id it"
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise FileNotFoundError(f"{where} needs `huggingface_hub` (pip install huggingface_hub)") from None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")

    def fetch(allow: list[str], local_only: bool) -> Path:
        return Path(huggingface_hub.snapshot_download(
            repo_id, allow_patterns=allow, local_files_only=local_only, etag_timeout=10))

    def has_weights(d: Path) -> bool:
        return any((d / f).exists() for f in WEIGHT_FILES)

    try:  # the local cache first: no network needed when it was downloaded before
        d = fetch(patterns, local_only=True)
        if has_weights(d):
            return d
    except (OSError, ValueError):
        pass
    if offline:
        raise FileNotFoundError(f"{where} is not in the local cache, and HF_HUB_OFFLINE is set; "
                                "download it once online, or pass a local directory") from None
    try:
        d = fetch(patterns, local_only=False)
        if not has_weights(d):  # an old repository with pytorch_model.bin only
            d = fetch([*patterns, "pytorch_model.bin*"], local_only=False)
    except HfHubHTTPError as e:
        raise FileNotFoundError(f"{where} could not be fetched: {e}") from None
    except (OSError, ValueError) as e:  # ConnectError surfaces as LocalEntryNotFoundError (an OSError)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FileNotFoundError(f"{where} could not be fetched (no network?): {first}") from None
    return d


def tokenizer_directory(model_dir: Path, named: Path) -> Path | None:
    """The first of the model directory, the run directory and its tokenizer/ that holds a tokenizer."""
    try:
        from zhixing.tokenizers import Tokenizer
    except ImportError:
        return None
    for d in dict.fromkeys((model_dir, named, named / "tokenizer")):
        if d.is_dir() and Tokenizer.can_load(d):
            return d
    return None
