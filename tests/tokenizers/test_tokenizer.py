"""The Tokenizer API: training each kind, roles, encode options, save/load round trips, jieba words."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhixing.tokenizers import Encoding, Tokenizer

SAMPLES = [
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话。",
    "Café naïve 👍🏽 \t tabs and  double  spaces, https://example.com/a?b=1",
    "<|endoftext|> special in text [CLS] [MASK]",
    "",
]


@pytest.fixture(scope="module")
def corpus(shakespeare_lines, peoples_daily_lines) -> list[str]:
    return shakespeare_lines[:8000] + [line + "\n" for line in peoples_daily_lines[:1500]]


@pytest.fixture(scope="module")
def trained(corpus) -> dict[str, Tokenizer]:
    sizes = {"wordpiece": 6000, "bpe": 6000, "byte_bpe": 2000, "char": 6000}
    return {
        kind: Tokenizer.train(iter(corpus), kind=kind, vocab_size=n, show_progress=False)
        for kind, n in sizes.items()
    }


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "byte_bpe", "char"])
def test_train_each_kind(trained, kind):
    tok = trained[kind]
    assert tok.kind == kind and 0 < tok.vocab_size <= 6000 and len(tok) == tok.vocab_size
    for role, token in tok.special_tokens.items():
        assert tok.token_to_id(token) == getattr(tok, f"{role}_id")
        assert tok.id_to_token(tok.token_to_id(token)) == token
    text = SAMPLES[0]
    enc = tok.encode(text)
    assert isinstance(enc, Encoding) and len(enc.ids) == len(enc.tokens) == len(enc.offsets) == len(enc)
    # offsets point into the original text; without special tokens they rebuild it for char/byte_bpe
    if kind in ("char", "byte_bpe"):
        assert "".join(text[a:b] for a, b in enc.offsets) == text
        assert tok.decode(enc.ids) == text


def test_default_roles(trained):
    wp = trained["wordpiece"]
    assert [wp.pad_id, wp.unk_id, wp.cls_id, wp.sep_id, wp.mask_id] == [0, 1, 2, 3, 4]
    assert wp.bos_id is None and wp.eos_id is None
    gpt = trained["byte_bpe"]
    assert gpt.bos_id == gpt.eos_id == gpt.token_to_id("<|endoftext|>") and gpt.unk_id is None
    assert gpt.special_tokens == {"pad": "<|pad|>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"}


def test_roles_regardless_of_spelling(corpus):
    tok = Tokenizer.train(
        iter(corpus[:2000]), kind="wordpiece", vocab_size=800, show_progress=False,
        special_tokens={"pad": "<p>", "unk": "<?>", "cls": "<c>", "sep": "<s>", "mask": "<m>"},
    )  # fmt: skip
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    tokens = tok.encode("speak", "there").tokens
    assert tokens[0] == "<c>" and tokens[-1] == "<s>" and tokens.count("<s>") == 2
    listed = Tokenizer.train(
        iter(corpus[:2000]), kind="bpe", vocab_size=800, show_progress=False,
        special_tokens=["<unk>", "</s>", "<|user|>"],
    )  # fmt: skip
    assert listed.special_tokens == {"unk": "<unk>", "eos": "</s>"}
    assert listed.extra_special_tokens == ["<|user|>"]
    assert listed.encode("a <|user|> b").tokens.count("<|user|>") == 1


def test_wordpiece_is_bert_like(trained):
    tok = trained["wordpiece"]
    enc = tok.encode("Héllo, WORLD! 知行", "second")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" and enc.tokens.count("[SEP]") == 2
    assert "知" in enc.tokens and "行" in enc.tokens  # every CJK character its own pre-token
    first = enc.tokens.index("[SEP]") + 1
    assert enc.type_ids == [0] * first + [1] * (len(enc) - first)
    assert enc.special_tokens_mask[0] == 1 and enc.word_ids[0] is None
    assert tok.decode(tok.encode("Hello, world!").ids) == "hello, world!"  # lowercased, accents stripped


def test_truncation_and_padding(trained):
    tok = trained["wordpiece"]
    long, short = SAMPLES[1] * 3, "hi"
    assert len(tok.encode(long, max_length=16)) == 16
    assert len(tok.encode(long)) > 16  # no max_length: no truncation
    n = len(tok.encode(short))
    enc = tok.encode(short, max_length=10, padding="max_length")
    assert len(enc) == 10 and enc.ids[n:] == [tok.pad_id] * (10 - n)
    assert enc.attention_mask == [1] * n + [0] * (10 - n) and enc.tokens[n - 1] == "[SEP]"
    batch = tok.encode_batch([long, short], padding=True)
    assert len(batch[0]) == len(batch[1]) and batch[1].attention_mask.count(0) == len(batch[0]) - n
    pair = tok.encode(short, long, max_length=12, truncation="only_second")
    assert len(pair) == 12 and pair.tokens[:n] == tok.encode(short).tokens  # the first text is kept whole
    # settings do not leak from one call into the next
    assert len(tok.encode(long)) == len(tok.encode_batch([long])[0]) > 16
    assert tok.encode_batch([short, long], pad_to_multiple_of=8, padding=True)[0].ids.__len__() % 8 == 0


def test_decode_takes_tensors_and_skips_specials(trained):
    import torch

    tok = trained["wordpiece"]
    ids = tok.encode("hear me speak").ids
    assert tok.decode(torch.tensor(ids)) == tok.decode(ids) == "hear me speak"
    assert tok.decode(ids, skip_special_tokens=False).startswith("[CLS]")
    assert tok.decode_batch([ids, ids]) == ["hear me speak"] * 2


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "byte_bpe", "char"])
def test_save_load_round_trip(trained, kind, tmp_path, corpus):
    tok = trained[kind]
    out = tok.save(tmp_path / "tok")
    assert Tokenizer.can_load(out) and not list(out.glob(".*.tmp"))
    back = Tokenizer.load(out)
    assert (back.kind, back.special_tokens, back.vocab_size) == (kind, tok.special_tokens, tok.vocab_size)
    texts = corpus[::97] + SAMPLES
    assert [e.ids for e in back.encode_batch(texts)] == [e.ids for e in tok.encode_batch(texts)]
    tok.save(out)  # saving over an existing directory replaces it cleanly
    assert Tokenizer.load(out).get_vocab() == tok.get_vocab()


def test_gpt2_format_round_trip(trained, tmp_path, corpus):
    """vocab.json + merges.txt alone (GPT-2's files, no tokenizer.json) give identical encodings."""
    tok = trained["byte_bpe"]
    tok.save(tmp_path / "full")
    for with_config in (True, False):
        d = tmp_path / f"gpt2-{with_config}"
        d.mkdir()
        files = ["vocab.json", "merges.txt"] + (["tokenizer_config.json"] if with_config else [])
        for name in files:
            shutil.copy(tmp_path / "full" / name, d / name)
        back = Tokenizer.load(d)
        assert back.kind == "byte_bpe" and back.special_tokens == tok.special_tokens
        texts = corpus[::41] + SAMPLES
        for a, b in zip(back.encode_batch(texts), tok.encode_batch(texts)):
            assert (a.ids, a.offsets, a.tokens) == (b.ids, b.offsets, b.tokens)


def test_bert_vocab_txt_round_trip(trained, tmp_path, corpus):
    tok = trained["wordpiece"]
    tok.save(tmp_path / "full")
    d = tmp_path / "bert"
    d.mkdir()
    shutil.copy(tmp_path / "full" / "vocab.txt", d / "vocab.txt")  # casing inferred: no capitals
    back = Tokenizer.load(d)
    texts = corpus[::41] + SAMPLES
    assert [e.ids for e in back.encode_batch(texts, texts[::-1])] == [
        e.ids for e in tok.encode_batch(texts, texts[::-1])
    ]


def test_saved_directory_loads_in_transformers(trained, tmp_path):
    from transformers import AutoTokenizer

    for kind in ("wordpiece", "byte_bpe"):
        tok = trained[kind]
        tok.save(tmp_path / kind)
        hf = AutoTokenizer.from_pretrained(tmp_path / kind)
        for text in SAMPLES:
            assert hf(text)["input_ids"] == tok.encode(text).ids
        assert hf.pad_token_id == tok.pad_id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_byte_bpe_decode_inverts_encode(trained, text):
    tok = trained["byte_bpe"]
    enc = tok.encode(text)
    # special-token spellings in the text stay special tokens, so the exact inverse keeps specials
    assert tok.unk_id is None and tok.decode(enc.ids, skip_special_tokens=False) == text
    if not any(s in text for s in tok.special_tokens.values()):
        assert tok.decode(enc.ids) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_wordpiece_offsets_are_spans_of_the_input(trained, text):
    enc = trained["wordpiece"].encode(text)
    for (a, b), special in zip(enc.offsets, enc.special_tokens_mask):
        assert 0 <= a <= b <= len(text) and (special or a < b)


def test_chinese_whole_word_ids(corpus, tmp_path):
    tok = Tokenizer.train(
        iter(corpus[-1500:]), kind="wordpiece", vocab_size=5000, chinese_words="jieba", show_progress=False
    )
    text = "我们在北京大学读书 hello world"
    enc = tok.encode(text)
    assert all(len(t) == 1 for t in enc.tokens[1:10])  # tokens stay single characters
    import jieba

    words = [w for w in jieba.cut(text) if w.strip()]
    groups: dict[int, str] = {}
    for w, (a, b) in zip(enc.word_ids, enc.offsets):
        if w is not None:
            groups[w] = groups.get(w, "") + text[a:b]
    assert list(groups.values()) == words  # 我们 / 在 / 北京大学 / 读书 / hello / world, as jieba cuts
    pair = tok.encode(text, "北京大学")
    assert pair.word_ids[-2] == 0 and pair.word_ids[-1] is None  # restarts in the second sequence
    assert [e.word_ids for e in tok.encode_batch([text])] == [enc.word_ids]
    tok.save(tmp_path / "wwm")
    assert Tokenizer.load(tmp_path / "wwm").encode(text).word_ids == enc.word_ids
    plain = Tokenizer.load(tmp_path / "wwm")
    plain.chinese_words = None
    assert plain.encode(text).word_ids[1:5] == [0, 1, 2, 3]  # one word per character without jieba


def test_config_names_roles_for_transformers(trained, tmp_path):
    trained["wordpiece"].save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["cls_token"] == "[CLS]" and config["do_lower_case"] is True
    assert config["zhixing"]["kind"] == "wordpiece"
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:2] == ["[PAD]", "[UNK]"]
