"""XLNet's SentencePiece tokenizer against transformers: from spiece.model (with the sentencepiece package)
and from tokenizer.json (without it), token for token on mixed text; XLNet's layout A <sep> B <sep> <cls>
(type ids 0, 1, 2) and its left padding, available from our Tokenizer."""

from __future__ import annotations

import sys

import pytest
from tokenizers import trainers

from zhixing.tokenizers import Tokenizer, TokenizerError
from zhixing.tokenizers.spiece import XLNET_ROLES, xlnet_backend, xlnet_template

transformers = pytest.importorskip("transformers")

SPECIALS = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]  # XLNet's ids 0..8
TEXTS = [
    "Hello world, this is XLNet's tokenizer.",
    "知行合一，理论联系实际。Mixed 中文 and English!",
    "“Quoted” ``old-style'' quotes — dashes… 12,345.67 and ①②",
    "   leading,   inner    and trailing spaces   ",
    "Café crème brûlée, naïve façade, ÉCOLE, ﬁ ligature",
    "a <mask> token and a <sep> inside, plus an unknown ☃",
]
PAIRS = ["second segment", "短", "x y z", "another one", "b", "the end."]


def corpus() -> list[str]:
    from pydoc_data.topics import topics  # English text that ships with CPython

    lines = [line for text in list(topics.values())[:40] for line in text.splitlines() if line.strip()]
    return lines + ["知行合一，理论联系实际。中文和英文混合的句子。", "Café crème brûlée naïve façade"] * 20


@pytest.fixture(scope="module")
def spiece_dir(tmp_path_factory):
    """A real spiece.model trained by SentencePiece with XLNet's special pieces, and the directory
    transformers writes for it (tokenizer.json)."""
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("spiece")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(d / "spiece"), vocab_size=500,
        model_type="unigram", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, control_symbols=SPECIALS[3:],
        character_coverage=0.9995, minloglevel=2)
    (d / "spiece.vocab").unlink()
    hf = transformers.XLNetTokenizer.from_pretrained(d)
    hf.save_pretrained(d / "hf")
    return d


def check_equal(ours: Tokenizer, hf) -> None:
    for text, pair in zip(TEXTS, PAIRS):
        assert ours.encode(text).ids == hf(text)["input_ids"], text
        theirs = hf(text, pair, return_token_type_ids=True)
        enc = ours.encode(text, pair)
        assert (enc.ids, enc.type_ids) == (theirs["input_ids"], theirs["token_type_ids"]), text
        assert ours.decode(enc.ids) == hf.decode(theirs["input_ids"], skip_special_tokens=True)
    batch = hf(TEXTS, PAIRS, padding=True, return_token_type_ids=True)
    encs = ours.encode_batch(TEXTS, PAIRS, padding=True)
    assert [e.ids for e in encs] == batch["input_ids"]
    assert [e.attention_mask for e in encs] == batch["attention_mask"]
    # real positions: the same token types; padding: XLNet's 3 (transformers 4 writes 3, while 5 writes 0
    # because its base class resets the XLNet class's value; the model never reads it)
    for e, types, mask in zip(encs, batch["token_type_ids"], batch["attention_mask"]):
        assert e.type_ids == [t if m else 3 for t, m in zip(types, mask)]


def test_spiece_model_matches_transformers(spiece_dir):
    ours = Tokenizer.load(spiece_dir)  # the directory holds spiece.model only
    assert (ours.kind, ours.padding_side, ours.pad_type_id) == ("unigram", "left", 3)
    assert [ours.token_to_id(t) for t in SPECIALS] == list(range(9))
    check_equal(ours, transformers.XLNetTokenizer.from_pretrained(spiece_dir))


def test_tokenizer_json_written_by_transformers_matches_it(spiece_dir):
    ours = Tokenizer.load(spiece_dir / "hf")
    assert ours.padding_side == "left" and ours.tokenizer_class == "XLNetTokenizer"
    check_equal(ours, transformers.AutoTokenizer.from_pretrained(spiece_dir / "hf"))


def test_unigram_trained_with_tokenizers_round_trips_through_transformers(tmp_path):
    """No sentencepiece needed: a Unigram model trained by `tokenizers` in XLNet's pipeline, saved by us,
    is read by transformers as an XLNetTokenizer that encodes as we do; loading it back keeps the layout."""
    backend = xlnet_backend([("<unk>", 0.0)], unk_id=0, charsmap=None)
    backend.train_from_iterator(corpus(), trainers.UnigramTrainer(
        vocab_size=400, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False))
    xlnet_template(backend, XLNET_ROLES)
    tok = Tokenizer(backend, "unigram", XLNET_ROLES, ["<eop>", "<eod>"], padding_side="left", pad_type_id=3,
                    tokenizer_class="XLNetTokenizer")
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__.startswith("XLNetTokenizer") and hf.padding_side == "left"
    check_equal(tok, hf)
    back = Tokenizer.load(tmp_path)
    assert (back.padding_side, back.pad_type_id, back.tokenizer_class) == ("left", 3, "XLNetTokenizer")
    check_equal(back, hf)


def test_xlnet_layout_cls_last_and_left_padding(spiece_dir):
    tok = Tokenizer.load(spiece_dir / "hf")
    enc = tok.encode("first part", "second")
    assert enc.tokens[-2:] == ["<sep>", "<cls>"] and enc.tokens.count("<sep>") == 2
    sep = enc.tokens.index("<sep>")
    assert enc.type_ids == [0] * (sep + 1) + [1] * (len(enc) - sep - 2) + [2]  # A <sep> | B <sep> | <cls>
    short, long = tok.encode_batch(["hi", "a much longer first sentence here"], padding=True)
    assert len(short) == len(long) and short.tokens[-1] == long.tokens[-1] == "<cls>"
    n_pad = short.attention_mask.count(0)
    assert n_pad > 0 and short.attention_mask == [0] * n_pad + [1] * (len(short) - n_pad)  # pads on the left
    assert short.ids[:n_pad] == [tok.pad_id] * n_pad and short.type_ids[:n_pad] == [3] * n_pad


def test_spiece_errors_name_the_file_and_the_fix(spiece_dir, tmp_path, monkeypatch):
    (tmp_path / "spiece.model").write_bytes((spiece_dir / "spiece.model").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "AlbertTokenizer"}')
    with pytest.raises(TokenizerError, match="only XLNet's spiece.model .* AlbertTokenizer; fix: save it"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if it were not installed
    with pytest.raises(TokenizerError, match="needs the sentencepiece package; fix: pip install"):
        Tokenizer.load(tmp_path)
