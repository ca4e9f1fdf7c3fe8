"""Decoders fine-tuned like encoders: `finetune --task classify` on a GPT scores at the last real token,
learns, predicts through the pipeline, and exports as GPT2ForSequenceClassification."""

from __future__ import annotations

import warnings

import pytest
import torch
from task_synth import WORDS, sentiment_rows

import zhixing
from zhixing.errors import ConfigError
from zhixing.tasks.data import TextExample
from zhixing.tasks.finetune import finetune, finetune_config, load_for_task

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1"]


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.train(iter(WORDS * 5), kind="byte_bpe", vocab_size=300, min_frequency=1,
                          show_progress=False, special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"})
    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=64, dropout=0.0, pad_token_id=tok.pad_id)
    d = tmp_path_factory.mktemp("tiny-gpt")
    model.save_pretrained(d)
    tok.save(d)
    return d


def examples(n, seed):
    return [TextExample(text, None, label) for text, label in sentiment_rows(n, seed)]


def test_gpt_classify_learns_and_pipeline_predicts(tiny_gpt, tmp_path):
    cfg = finetune_config("classify", model=str(tiny_gpt), max_seq_len=32, epochs=6)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*freshly initialised")
        summary = finetune(cfg, name="gpt-clf", train_examples=examples(240, 0), dev_examples=examples(60, 1),
                           train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["accuracy"] >= 0.9, summary["dev"]
    clf = zhixing.pipeline("classify", summary["run_dir"])
    batch = clf(["the film was very awful", "the plot was very great"])
    assert [p["label"] for p in batch] == ["neg", "pos"]
    model = zhixing.load(summary["run_dir"])
    assert model.config.arch == "gpt" and model.config.head == "seq_cls"
    zhixing_out = model(torch.tensor([[5, 6, 7, 0, 0]]), attention_mask=torch.tensor([[1, 1, 1, 0, 0]]))
    torch.testing.assert_close(zhixing_out.logits, model(torch.tensor([[5, 6, 7]])).logits)  # padding inert


def test_gpt_refuses_token_and_span_heads(tiny_gpt):
    with pytest.raises(ConfigError, match="head 'token_cls' needs an encoder.*gpt.*--task classify"):
        load_for_task(str(tiny_gpt), "token_cls", ["O", "B-PER"])


@pytest.mark.slow
def test_quick_sentiment_with_a_gpt_and_its_random_twin(tmp_path):
    """The quickstart's stage 2 on a tiny GPT: the pretrained model and a random twin, same steps."""
    import importlib.util

    if importlib.util.find_spec("snownlp") is None:
        pytest.skip("snownlp is not installed")
    from zhixing.models import build_model
    from zhixing.recipes.sentiment import quick_sentiment, snownlp_reviews
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.train(iter([e.text for e in snownlp_reviews()[0][:2000]]), kind="bpe", vocab_size=3000,
                          show_progress=False)
    torch.manual_seed(0)
    build_model("gpt-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                max_seq_len=64).save_pretrained(tmp_path / "gpt")
    tok.save(tmp_path / "gpt")
    summary = quick_sentiment(str(tmp_path / "gpt"), out_dir=str(tmp_path), max_train=200, max_eval=40,
                              epochs=1, max_seq_len=32, progress=False, lr=1e-3, baseline=True)
    assert summary["random_init"]["step"] == summary["step"]
    assert 0 <= summary["random_init"]["dev"]["accuracy"] <= 1 and 0 <= summary["dev"]["accuracy"] <= 1


def test_gpt_classify_refuses_an_encoder_s_pooling(tiny_gpt, tmp_path):
    """pooling=cls names an encoder's pooled [CLS]: a decoder has none, and says which it has."""
    cfg = finetune_config("classify", model=str(tiny_gpt), max_seq_len=32, pooling="cls")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*freshly initialised")
        with pytest.raises(ConfigError, match="pooling='cls': .* gpt, whose classifier reads 'mean' or"):
            finetune(cfg, name="gpt-cls", train_examples=examples(16, 0), dev_examples=examples(8, 1),
                     train_overrides=[f"out_dir={tmp_path}", *FAST])
