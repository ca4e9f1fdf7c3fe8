"""XLNet's SentencePiece tokenizer: its pipeline on the `tokenizers` engine, and its `spiece.model` file.

SentencePiece (Kudo & Richardson 2018) with a unigram language model (Kudo 2018): a word, prefixed with
"▁" to mark its start, is cut into the pieces x_1..x_n of the vocabulary that maximise Σ_i log p(x_i)
(Viterbi over the lattice of pieces); `tokenizers.models.Unigram` runs exactly that with the file's
log-probabilities. XLNet's pipeline around it, as transformers builds it:

    normalizer      ``→" and ''→", NFKD + strip accents (unless keep_accents), lowercase (if asked),
                    then SentencePiece's own precompiled character map (NFKC-like rules)
    pre-tokenizer   split on whitespace, then "▁" before every word
    template        A <sep> <cls>  and  A <sep> B <sep> <cls>: <cls> comes LAST, with segment id 2
                    (A = 0, B = 1); XLNet pads on the LEFT with segment id 3, so <cls> stays the last token

`spiece.model` is a protobuf (ModelProto: pieces with scores and types, the trainer and normalizer
specs); reading it needs the `sentencepiece` package for the schema. A `tokenizer.json` holds the same
pipeline and needs nothing beyond `tokenizers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend

from .errors import TokenizerError

# XLNet's special tokens by role, and the two without a role (end of paragraph / document)
XLNET_ROLES = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "cls": "<cls>", "sep": "<sep>", "pad": "<pad>",
               "mask": "<mask>"}
XLNET_EXTRAS = ["<eop>", "<eod>"]
XLNET_PAD_TYPE_ID = 3  # segment id of padding (A = 0, B = 1, <cls> = 2)
_UNIGRAM = 1  # TrainerSpec.ModelType.UNIGRAM
_CONTROL, _USER_DEFINED = 3, 4  # SentencePiece.Type


def xlnet_template(backend: Backend, roles: Mapping[str, str]) -> None:
    """The post-processor: A <sep> <cls> / A <sep> B <sep> <cls>, type ids 0 / 1, and 2 for <cls>."""
    cls, sep = roles["cls"], roles["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {sep}:0 {cls}:2",
        pair=f"$A:0 {sep}:0 $B:1 {sep}:1 {cls}:2",
        special_tokens=[(sep, backend.token_to_id(sep)), (cls, backend.token_to_id(cls))],
    )


def xlnet_backend(vocab: list[tuple[str, float]], unk_id: int, charsmap: bytes | None, *,
                  lowercase: bool = False, keep_accents: bool = False) -> Backend:
    """A Unigram model over (piece, log-probability) with XLNet's normalizer, pre-tokenizer and decoder."""
    backend = Backend(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return backend


def load_spiece(path: Path, config: dict) -> tuple[Backend, dict[str, str], list[str]]:
    """(backend, roles, extras) of XLNet's `spiece.model`; `config` is tokenizer_config.json's content
    (do_lower_case, keep_accents, special tokens), empty when there is none."""
    name = str(config.get("tokenizer_class") or "XLNetTokenizer")
    if name.removesuffix("Fast") != "XLNetTokenizer":
        raise TokenizerError(f"{path}: only XLNet's spiece.model is read directly, this directory is a "
                             f"{name}; fix: save it with transformers, which writes tokenizer.json")
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise TokenizerError(f"{path}: reading spiece.model needs the sentencepiece package; fix: pip "
                             "install sentencepiece, or use a tokenizer.json of the same tokenizer") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise TokenizerError(f"{path}: not a SentencePiece model ({e}); fix: replace the file") from None
    if proto.trainer_spec.model_type != _UNIGRAM:
        raise TokenizerError(f"{path}: a SentencePiece model of type {proto.trainer_spec.model_type}, not "
                             "unigram (1), which XLNet uses")
    vocab = [(p.piece, p.score) for p in proto.pieces]
    backend = xlnet_backend(vocab, proto.trainer_spec.unk_id, proto.normalizer_spec.precompiled_charsmap,
                            lowercase=bool(config.get("do_lower_case", False)),
                            keep_accents=bool(config.get("keep_accents", False)))
    roles = dict(XLNET_ROLES)
    for role in roles:
        token = config.get(f"{role}_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            roles[role] = token
    missing = [t for t in roles.values() if backend.token_to_id(t) is None]
    if missing:
        raise TokenizerError(f"{path}: XLNet's special tokens {missing} are not pieces of this model")
    # control and user-defined pieces are matched whole, before normalisation; control ones are special
    pieces = [(p.piece, p.type == _CONTROL) for p in proto.pieces if p.type in (_CONTROL, _USER_DEFINED)]
    names = {t for t, _ in pieces} | set(roles.values())
    others = [AddedToken(t, special=s, normalized=False) for t, s in pieces if t not in roles.values()]
    backend.add_tokens(others)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in roles.values()])
    xlnet_template(backend, roles)
    return backend, roles, [t for t in XLNET_EXTRAS if t in names]


__all__ = ["XLNET_PAD_TYPE_ID", "XLNET_ROLES", "load_spiece", "xlnet_backend", "xlnet_template"]
