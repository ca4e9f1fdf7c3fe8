"""Dynamic int8 (zhixing.quant.quantize(model, "dynamic-int8")): every Linear swapped, outputs close to
fp32, the heads and the pretrained pipelines still work."""

import pytest
import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.quant import num_parameters, quantization_of, quantize
from zhixing.quant.dynamic import is_dynamic_linear


def tiny_bert(head: str = "seq_cls"):
    torch.manual_seed(0)
    return build_model("bert-tiny", vocab_size=120, dim=64, num_heads=2, num_layers=2, ffn_dim=128,
                       max_seq_len=32, dropout=0.0, head=head, num_labels=3).eval()


def test_linears_swapped_and_outputs_close():
    model = tiny_bert()
    ids = torch.randint(0, 120, (4, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        ref = model(ids, attention_mask=mask)
    n_linear = sum(type(m) is nn.Linear for m in model.modules())
    n_params = model.num_parameters()
    assert n_linear > 0
    assert quantize(model, "dynamic-int8") is model
    assert sum(type(m) is nn.Linear for m in model.modules()) == 0
    assert sum(is_dynamic_linear(m) for m in model.modules()) == n_linear
    assert quantization_of(model) == {"method": "dynamic-int8"}
    assert num_parameters(model) == n_params
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
    # int8 weights (per channel) and int8 activations (per tensor): the error of a 2-layer dim-64 model is
    # a few percent of the hidden states' scale; 0.1 absolute on unit-variance LayerNorm outputs
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=0.1, rtol=0)
    torch.testing.assert_close(out.logits, ref.logits, atol=0.05, rtol=0)


def test_pretrained_pipeline_on_quantized_model(tmp_path):
    from zhixing.tasks.pretrained import EmbeddingPipeline
    from zhixing.tokenizers import Tokenizer

    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away"]
    tok = Tokenizer.train(iter([" ".join(words)] * 20), kind="wordpiece", vocab_size=40, min_frequency=1,
                          show_progress=False)
    torch.manual_seed(0)
    model = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=32, dropout=0.0, head="none")
    model.save_pretrained(tmp_path)
    tok.save(tmp_path)
    pipe = EmbeddingPipeline(tmp_path, sentence=True, normalize=True)
    ref = pipe(["the cat sat on a mat", "a dog ran"])  # (2, dim) unit vectors
    quantize(pipe.model, "dynamic-int8")
    out = pipe(["the cat sat on a mat", "a dog ran"])
    assert out.shape == ref.shape == (2, 32)
    assert (out * ref).sum(-1).min() > 0.99  # cosine similarity of each text's int8 and fp32 embedding


def test_bad_input():
    model = tiny_bert()
    with pytest.raises(ConfigError, match="method='int3'"):
        quantize(model, "int3")
    with pytest.raises(ConfigError, match="group_size=32"):
        quantize(model, "dynamic-int8", group_size=32)
    quantize(model, "dynamic-int8")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(model, "dynamic-int8")


def test_saved_dynamic_int8_classifier_runs_the_classify_pipeline(tmp_path):
    import zhixing
    from zhixing.quant import save
    from zhixing.tokenizers import Tokenizer

    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away"]
    tok = Tokenizer.train(iter([" ".join(words)] * 20), kind="wordpiece", vocab_size=40, min_frequency=1,
                          show_progress=False)
    torch.manual_seed(0)
    model = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=32, head="seq_cls", num_labels=2, label_names=["neg", "pos"])
    model.save_pretrained(tmp_path / "fp32")
    tok.save(tmp_path / "fp32")
    texts = ["the cat sat", "a dog ran far"]
    ref = zhixing.pipeline("classify", tmp_path / "fp32")(texts)
    model = zhixing.load(tmp_path / "fp32")
    save(quantize(model, "dynamic-int8"), tmp_path / "int8")
    out = zhixing.pipeline("classify", tmp_path / "int8")(texts)
    for a, b in zip(ref, out):
        assert a["scores"].keys() == b["scores"].keys()
        for label in a["scores"]:
            assert abs(a["scores"][label] - b["scores"][label]) < 0.01
