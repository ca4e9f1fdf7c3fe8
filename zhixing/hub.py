"""Where a model lives and how it is loaded: a model directory, a run directory, or a Hugging Face Hub id.

`load` / `load_tokenizer` (exported as `zhixing.load` / `zhixing.load_tokenizer`) are what every layer
above the models uses to open one; `resolve` finds the directory. A Hub id is fetched with
`huggingface_hub` when it is installed and the network is reachable; offline (HF_HUB_OFFLINE=1, no
network) the call fails at once with a message saying so, and never waits on a download.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhixing.errors import ConfigError
from zhixing.io import model_directory, read_json_object

if TYPE_CHECKING:
    from zhixing.models.base import Model
    from zhixing.tokenizers import Tokenizer

# "gpt2", "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


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


def sentence_transformers_settings(directory: Path) -> dict[str, Any]:
    """pooling / normalize / max_length from a sentence-transformers directory (modules.json), if any."""
    out: dict[str, Any] = {}
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return out
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    out["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith("Pooling"):
            cfg = json.loads((directory / m["path"] / "config.json").read_text(encoding="utf-8"))
            out["pooling"] = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    sbert = directory / "sentence_bert_config.json"
    if sbert.is_file():
        out["max_length"] = json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length")
    return out


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


def load(path: str | os.PathLike, **config_overrides: Any) -> Model:
    """Load a model: a zhixing directory, a run directory, a Hugging Face directory or a Hub id.

    - zhixing (`config.json` with an `arch` key, written by `save_pretrained`): loaded as is;
      a run directory `runs/<name>/` gives its `best/` model, else its last `checkpoints/step-N/`.
    - a quantized zhixing directory (`zhixing quantize`; config.json has a `quantization` section):
      rebuilt with its quantized layers by `zhixing.quant.load`.
    - Hugging Face (`config.json` with `model_type` bert / roberta / gpt2 / llama / electra): converted with
      `zhixing.interop.from_hf`; weights from model.safetensors, or pytorch_model.bin read with
      `weights_only=True`.
    - A Hub id such as "gpt2" (when no such directory exists): fetched with huggingface_hub if it is
      installed; offline this fails at once with a message saying so.

    The tokenizer found next to the weights (or in the run directory) is attached as `model.tokenizer`
    (None when there is none). `config_overrides` are ModelConfig fields, e.g. attn_impl="eager".
    The model is returned in eval mode.
    """
    directory, named = resolve(path)
    config_file = directory / "config.json"
    data = read_json_object(config_file)
    if "arch" in data and "quantization" in data:  # written by zhixing.quant.save
        from zhixing.quant import load as load_quantized

        model = load_quantized(directory, data, **config_overrides)
    elif "arch" in data:
        from zhixing.models.base import Model
        from zhixing.peft.runs import find_record

        record = find_record(directory)
        if record is not None:  # a run of a parameter-efficient method: base model + its saved adapter
            model = _load_adapter_run(directory, record, config_overrides)
        else:
            model = Model.from_pretrained(directory, **config_overrides)
    elif "model_type" in data:
        from zhixing.interop import from_hf

        model = from_hf(directory, **config_overrides)
    else:
        from zhixing.interop import SUPPORTED_MODEL_TYPES

        raise ConfigError(f"{config_file}: neither a zhixing config (no 'arch' key) nor a Hugging Face one "
                          "(no 'model_type'); supported Hugging Face model types: "
                          f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    tok_dir = tokenizer_directory(directory, named)
    if tok_dir is not None:
        from zhixing.tokenizers import Tokenizer

        model.tokenizer = Tokenizer.load(tok_dir)
    else:
        model.tokenizer = None
    return model.eval()


def _load_adapter_run(directory: Path, record: Path, overrides: dict[str, Any]) -> Model:
    """The model of an adapter run (zhixing.peft.runs): its base model loaded, the adapter put on it, and
    the run's trained tensors (adapters + head) from model.safetensors."""
    from zhixing.config import ModelConfig
    from zhixing.models.base import Model, read_safetensors
    from zhixing.peft.runs import base_path, open_adapter_run

    info = read_json_object(record)
    base = load(base_path(info, str(record)))
    cfg = ModelConfig.load(directory)
    if overrides:
        cfg = cfg.replace(**overrides)
    weights = directory / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing; an adapter run's model directory holds config.json + "
                                "model.safetensors (the adapter and the head)")
    model = open_adapter_run(Model.build(cfg), base, info, read_safetensors(weights), str(directory))
    model.base_path = info["base"]  # named in the adapter_config.json that zhixing.peft.save_peft writes
    return model


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a model, run or tokenizer directory (or Hub id), as `zhixing.load` finds it."""
    from zhixing.tokenizers import Tokenizer

    p = os.fspath(path)
    if os.path.isdir(p) and Tokenizer.can_load(p):  # a bare tokenizer directory (no config.json)
        return Tokenizer.load(p)
    directory, named = resolve(p)
    tok_dir = tokenizer_directory(directory, named)
    if tok_dir is None:
        raise FileNotFoundError(f"{named}: no tokenizer found (looked for tokenizer.json, vocab.txt, or "
                                f"vocab.json + merges.txt in {directory}" +
                                (f" and {named}" if named != directory else "") + ")")
    return Tokenizer.load(tok_dir)


__all__ = ["load", "load_tokenizer", "resolve", "download", "tokenizer_directory", "model_directory"]
