"""XLNet parity with transformers: import (from_hf), export (to_hf) and reload for every supported class;
plain forwards, both streams (perm_mask + target_mapping), token types, left padding, and segment
recurrence (chained calls with mems, the returned mems compared too). fp32, CPU, atol 1e-4
(observed: ~1e-7)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from zhixing.config import ConfigError  # noqa: E402
from zhixing.interop import from_hf, to_hf  # noqa: E402

VOCAB = 99
CLASSES = {
    "XLNetModel": "none", "XLNetLMHeadModel": "lm", "XLNetForSequenceClassification": "seq_cls",
    "XLNetForTokenClassification": "token_cls", "XLNetForQuestionAnsweringSimple": "qa",
}


def xlnet_config(**kw):
    base = dict(vocab_size=VOCAB, d_model=32, n_layer=2, n_head=4, d_inner=37, mem_len=None,
                attn_implementation="eager")
    return transformers.XLNetConfig(**{**base, **kw})


def left_padded_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    """3 rows of 9 in XLNet's layout A <sep> B <sep> <cls>, left-padded to 9, 6 and 4 real tokens;
    token types 0 (A), 1 (B), 2 (<cls>), 3 for padding as XLNet's tokenizer writes them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    for row, n in ((0, 9), (1, 6), (2, 4)):
        mask[row, : 9 - n] = 0
        types[row, : 9 - n] = 3
        types[row, 9 - n + n // 2: -1] = 1
        types[row, -1] = 2
    ids = ids.masked_fill(mask == 0, 5)
    ids[:, -1] = 3  # <cls>
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def two_stream_inputs(batch: int = 3, seq: int = 9, predict: int = 4, seed: int = 2):
    """A random factorisation order per row; the last `predict` tokens of it are the targets. perm_mask
    blocks each target from itself and from later targets; every row of target_mapping is one-hot,
    except the last row of sequence 0, left all-zero as XLNet pads num_predict."""
    g = torch.Generator().manual_seed(seed)
    perm_mask = torch.zeros(batch, seq, seq)
    target_mapping = torch.zeros(batch, predict, seq)
    for b in range(batch):
        order = torch.randperm(seq, generator=g)
        rank = torch.empty(seq, dtype=torch.long)
        rank[order] = torch.arange(seq)
        targets = order[seq - predict:]
        is_target = torch.zeros(seq, dtype=torch.bool)
        is_target[targets] = True
        # j is hidden from i when j is a target not earlier than i in the order (i itself included)
        perm_mask[b] = (is_target[None, :] & (rank[None, :] >= rank[:, None])).float()
        target_mapping[b, torch.arange(predict), targets] = 1.0
    target_mapping[0, -1] = 0.0
    return perm_mask, target_mapping


def out_hf(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    if hasattr(out, "start_logits"):
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def out_ours(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if out.logits is not None else out.last_hidden_state


def check(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor | None = None):
    if mask is not None and ours.dim() == 3 and ours.shape[:2] == mask.shape:  # real positions only
        ours, theirs = ours[mask.bool()], theirs[mask.bool()]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(CLASSES))
def test_import_and_export_match_transformers(name, tmp_path):
    config = xlnet_config(num_labels=2 if name.endswith("Simple") else 3)
    hf = getattr(transformers, name)(config).eval()
    ours = from_hf(hf)
    assert ours.config.head == CLASSES[name] and not ours.training
    plain = {"input_ids": left_padded_batch()["input_ids"]}
    padded = left_padded_batch()
    for inputs in (plain, padded):
        check(out_ours(ours, inputs), out_hf(hf, inputs), inputs.get("attention_mask"))

    to_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [name]
    reloaded = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    check(out_hf(reloaded, padded), out_hf(hf, padded), padded["attention_mask"])
    again = from_hf(tmp_path)  # and the directory route back into zhixing
    check(out_ours(again, padded), out_hf(hf, padded), padded["attention_mask"])


@pytest.mark.parametrize("name", ["XLNetModel", "XLNetLMHeadModel"])
@pytest.mark.parametrize("extras", ["none", "types+padding"])
def test_two_streams_match_transformers(name, extras):
    """perm_mask + target_mapping: the query stream (logits / states of every layer) and the content
    stream (through the mems, which are each layer's content input) equal transformers'."""
    hf = getattr(transformers, name)(xlnet_config()).eval()
    ours = from_hf(hf)
    perm_mask, target_mapping = two_stream_inputs()
    batch = left_padded_batch()
    inputs = {"input_ids": batch["input_ids"], "perm_mask": perm_mask, "target_mapping": target_mapping}
    if extras != "none":
        inputs.update(attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    with torch.no_grad():
        theirs = hf(**inputs, use_mems=True, output_hidden_states=True)
        mine = ours(**inputs, use_mems=True, output_hidden_states=True)
    check(out_ours(ours, inputs), out_hf(hf, inputs))
    assert out_ours(ours, inputs).shape[:2] == (3, 4)
    # transformers interleaves (h, g) per layer when both streams run; ours lists the query stream
    for got, want in zip(mine.hidden_states, theirs.hidden_states[1::2]):
        check(got, want)
    for got, want in zip(mine.mems, theirs.mems):
        check(got, want.transpose(0, 1))


def test_loss_with_target_mapping_matches_transformers():
    hf = transformers.XLNetLMHeadModel(xlnet_config()).eval()
    ours = from_hf(hf)
    perm_mask, target_mapping = two_stream_inputs()
    ids = left_padded_batch()["input_ids"]
    labels = ids.gather(1, target_mapping.argmax(-1))  # each row predicts the token at its position
    labels[0, -1] = -100  # the padding row of target_mapping
    inputs = {"input_ids": ids, "perm_mask": perm_mask, "target_mapping": target_mapping, "labels": labels}
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).loss, hf(**inputs).loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_type,mem_len", [("bi", None), ("bi", 5), ("uni", 5)])
def test_segment_recurrence_matches_transformers(attn_type, mem_len):
    """Two chained calls: the second reads the first's mems; logits and both calls' mems match."""
    hf = transformers.XLNetLMHeadModel(xlnet_config(attn_type=attn_type, mem_len=mem_len)).eval()
    ours = from_hf(hf)
    assert (ours.config.attn_type, ours.config.mem_len) == (attn_type, mem_len)
    g = torch.Generator().manual_seed(3)
    first, second = torch.randint(6, VOCAB, (2, 7), generator=g), torch.randint(6, VOCAB, (2, 6), generator=g)
    types = torch.zeros_like(second)
    types[:, 3:] = 1
    mask = torch.ones_like(second)
    mask[1, :2] = 0
    if attn_type == "uni":  # transformers cannot combine "uni" with an attention_mask (in-place broadcast)
        mask = None
    with torch.no_grad():
        hf1 = hf(first, use_mems=True)
        ours1 = ours(first, use_mems=True)
        for got, want in zip(ours1.mems, hf1.mems):
            check(got, want.transpose(0, 1))
        hf2 = hf(second, mems=hf1.mems, token_type_ids=types, attention_mask=mask, use_mems=True)
        ours2 = ours(second, mems=ours1.mems, token_type_ids=types, attention_mask=mask, use_mems=True)
    assert ours2.mems[0].size(1) == (mem_len or 13)
    check(ours2.logits, hf2.logits, mask)  # real positions
    for got, want in zip(ours2.mems, hf2.mems):
        check(got, want.transpose(0, 1))


def test_config_fields_map_both_ways(tmp_path):
    config = xlnet_config(ff_activation="gelu_new", clamp_len=3, attn_type="uni", mem_len=4,
                          layer_norm_eps=1e-6, dropout=0.2, summary_last_dropout=0.3, pad_token_id=5)
    hf = transformers.XLNetLMHeadModel(config).eval()
    ours = from_hf(hf)
    cfg = ours.config
    assert (cfg.arch, cfg.activation, cfg.clamp_len, cfg.attn_type, cfg.mem_len) == (
        "xlnet", "gelu_tanh", 3, "uni", 4)
    assert (cfg.norm_eps, cfg.dropout, cfg.attn_dropout, cfg.classifier_dropout) == (1e-6, 0.2, 0.2, 0.3)
    assert (cfg.head_dim, cfg.ffn_dim, cfg.pad_token_id, cfg.max_seq_len) == (8, 37, 5, 512)
    ids = left_padded_batch()["input_ids"][:, :8]  # long enough for clamp_len to matter
    check(out_ours(ours, {"input_ids": ids}), out_hf(hf, {"input_ids": ids}))
    to_hf(ours, tmp_path)
    back = transformers.AutoConfig.from_pretrained(tmp_path)
    assert (back.ff_activation, back.clamp_len, back.attn_type, back.mem_len) == ("gelu_new", 3, "uni", 4)


@pytest.mark.parametrize("change,match", [
    ({"bi_data": True}, "bi_data=True"),
    ({"same_length": True}, "same_length=True"),
    ({"reuse_len": 4}, "reuse_len=4"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings=False"),
])
def test_settings_zhixing_does_not_implement_are_refused(change, match):
    hf = transformers.XLNetLMHeadModel(xlnet_config(**change))
    with pytest.raises(ConfigError, match=match):
        from_hf(hf)


def test_sequence_summary_other_than_last_token_is_refused():
    hf = transformers.XLNetForSequenceClassification(xlnet_config(summary_type="first"))
    with pytest.raises(ConfigError, match="summary_type='first'"):
        from_hf(hf)


def test_unsupported_xlnet_classes_list_the_supported_ones():
    hf = transformers.XLNetForMultipleChoice(xlnet_config())
    with pytest.raises(ConfigError, match="XLNetForMultipleChoice is not supported.*QuestionAnsweringSimple"):
        from_hf(hf)


def test_sdpa_equals_eager_with_both_streams():
    hf = transformers.XLNetLMHeadModel(xlnet_config()).eval()
    perm_mask, target_mapping = two_stream_inputs()
    inputs = {**left_padded_batch(), "perm_mask": perm_mask, "target_mapping": target_mapping}
    eager, sdpa = from_hf(hf, attn_impl="eager"), from_hf(hf, attn_impl="sdpa")
    torch.testing.assert_close(out_ours(sdpa, inputs), out_ours(eager, inputs), atol=1e-5, rtol=1e-5)


def test_export_with_tokenizer_and_load_back(tmp_path):
    """to_hf writes the tokenizer as XLNet's (left padding, <cls> last) next to the weights; transformers
    and zhixing.load both read the directory back."""
    from tokenizers import trainers

    import zhixing
    from zhixing.tokenizers import Tokenizer
    from zhixing.tokenizers.spiece import XLNET_ROLES, xlnet_backend, xlnet_template

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    backend = xlnet_backend([("<unk>", 0.0)], unk_id=0, charsmap=None)
    text = ["knowing and doing are one", "theory and practice side by side", "知行合一"] * 10
    backend.train_from_iterator(text, trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=specials,
                                                              unk_token="<unk>", show_progress=False))
    xlnet_template(backend, XLNET_ROLES)
    tok = Tokenizer(backend, "unigram", XLNET_ROLES, ["<eop>", "<eod>"], padding_side="left", pad_type_id=3,
                    tokenizer_class="XLNetTokenizer")
    hf = transformers.XLNetLMHeadModel(xlnet_config(vocab_size=tok.vocab_size)).eval()
    model = from_hf(hf)
    model.tokenizer = tok
    to_hf(model, tmp_path)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tok.padding_side == "left"
    texts = ["knowing and doing", "theory and practice are one 知行"]
    inputs = hf_tok(texts, padding=True, return_tensors="pt")
    loaded = zhixing.load(tmp_path)
    encs = loaded.tokenizer.encode_batch(texts, padding=True)
    assert [e.ids for e in encs] == inputs["input_ids"].tolist() and encs[0].tokens[-1] == "<cls>"
    check(out_ours(loaded, dict(inputs)), out_hf(hf, dict(inputs)), inputs["attention_mask"])
