"""Weight-only quantization (int8 per channel, int4 per group, bf16/fp16): the layer computes x Ŵᵀ with
its dequantized weight, a quantized GPT saves and reloads to the same logits, `zhixing quantize` +
`zhixing generate` run, and bad input is a one-line error naming the argument or file."""

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import zhixing
from zhixing.cli import main
from zhixing.errors import CheckpointError, ConfigError
from zhixing.generation import generate
from zhixing.models import build_model
from zhixing.quant import QuantEmbedding, QuantLinear, num_parameters, quantize, save

CASES = [("int8", None), ("int4", 32), ("int4", 64), ("int4", 128), ("bf16", None), ("fp16", None)]


def tiny_gpt(vocab_size: int = 100, **kw):
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=vocab_size, dim=128, num_layers=2, num_heads=4,
                       max_seq_len=64, **kw).eval()


# in_features 40: not a multiple of 16, so the dequantizing path (int4 groups need 32 | in_features)
@pytest.mark.parametrize("method,group,in_features", [(m, g, k) for m, g in CASES for k in (256, 40)
                                                      if m != "int4" or k % g == 0])
def test_quant_linear_is_the_dequantized_matmul(method, group, in_features):
    torch.manual_seed(0)
    lin = nn.Linear(in_features, 75)  # 75 outputs: int4 pads to blocks of 16 inside
    q = QuantLinear.from_linear(lin, method, group)
    w = q.dequantize()
    # the weight is the float one up to half a quantization step
    step = {"int8": lin.weight.abs().amax(1, keepdim=True) / 127,
            "int4": (lin.weight.amax(1, keepdim=True) - lin.weight.amin(1, keepdim=True)) / 15}
    if method in step:
        assert ((w - lin.weight).abs() <= step[method] * 0.51 + 1e-3).all()
    x = torch.randn(3, 5, in_features)
    fast = in_features % 16 == 0 and method != "fp16"
    # the CPU kernels multiply bf16(x) by Ŵ with float32 sums and return bf16 (int8: then the float32
    # scale): rtol 2^-8 is one bf16 rounding of the result. The dequantizing path is float32 throughout.
    ref = F.linear(x.bfloat16().float() if fast else x, w, lin.bias)
    tol = dict(rtol=2 ** -8, atol=2e-3) if fast else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q(x), ref, **tol)


def test_tied_embedding_is_quantized_once():
    model = tiny_gpt()
    n = model.num_parameters()
    quantize(model, "int4", 64)
    assert num_parameters(model) == n  # the quantized weights are buffers, counted as the weights they are
    assert isinstance(model.tok_embed, QuantEmbedding) and model.tok_embed.linear is model.head.proj
    state = model.unique_state_dict()
    assert "tok_embed.weight" not in state and state["head.proj.qweight"].dtype == torch.uint8
    ids = torch.tensor([[3, 7, 99]])
    torch.testing.assert_close(model.tok_embed(ids), model.head.proj.dequantize()[ids])


@pytest.mark.parametrize("method,group", [("int8", None), ("int4", 32), ("bf16", None),
                                          ("dynamic-int8", None)])
def test_save_reload_identical_logits_and_generation(tmp_path, method, group):
    model = tiny_gpt()
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        ref = model(ids).logits
    quantize(model, method, group)
    with torch.no_grad():
        before = model(ids).logits
    assert (before - ref).abs().max() < 0.2 * ref.abs().max()  # still the same model, roughly
    save(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization"] == model.quantization
    loaded = zhixing.load(tmp_path)
    assert loaded.quantization == model.quantization
    with torch.no_grad():
        after = loaded(ids).logits
    assert torch.equal(after, before)
    a = generate(model, [[1, 2, 3]], max_new_tokens=6, do_sample=False).sequences
    b = generate(loaded, [[1, 2, 3]], max_new_tokens=6, do_sample=False).sequences
    assert torch.equal(a, b) and a.shape[-1] >= 9


def test_cli_quantize_then_generate(tmp_path):
    from zhixing.tokenizers import Tokenizer

    text = ["to be or not to be, that is the question", "all the world's a stage"] * 20
    tok = Tokenizer.train(iter(text), kind="byte_bpe", vocab_size=280, min_frequency=2, show_progress=False,
                          special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"})
    model = tiny_gpt(vocab_size=tok.vocab_size, eos_token_id=None)
    model.save_pretrained(tmp_path / "fp32")
    tok.save(tmp_path / "fp32")
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "fp32"), str(tmp_path / "q"), "--method",
                                       "int4", "--group-size", "64"])
    assert result.exit_code == 0, result.output
    assert "int4, group size 64" in result.output
    assert (tmp_path / "q" / "model.safetensors").stat().st_size < \
        (tmp_path / "fp32" / "model.safetensors").stat().st_size / 4
    info = CliRunner().invoke(main, ["info", str(tmp_path / "q")])
    assert info.exit_code == 0 and "method int4, group_size 64" in info.output
    assert f"{model.num_parameters():,}" in info.output
    for dtype in ("float32", "bfloat16"):  # --dtype casts the float parts; the quantized ones keep theirs
        result = CliRunner().invoke(main, ["generate", str(tmp_path / "q"), "to be", "--max-new-tokens", "5",
                                           "--device", "cpu", "--dtype", dtype])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("to be") and len(result.output.strip()) > len("to be")
    out = zhixing.pipeline("text-generation", tmp_path / "q")("to be", max_new_tokens=5, do_sample=False)
    assert out["generated_text"].startswith("to be")
    from fastapi.testclient import TestClient

    from zhixing.serve.app import ServeSettings, create_app

    with TestClient(create_app({"q": str(tmp_path / "q")}, ServeSettings())) as client:
        r = client.post("/v1/completions", json={"model": "q", "prompt": "to be", "max_tokens": 5})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 5


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="group_size=32 does not divide in_features=200 of layers.0.ffn"):
        quantize(tiny_gpt(ffn_dim=200), "int4", 32)
    with pytest.raises(ConfigError, match="group_size=16: int4 groups must have 32, 64, 128, 256"):
        quantize(tiny_gpt(), "int4", 16)
    with pytest.raises(ConfigError, match="group_size=32: only int4"):
        quantize(tiny_gpt(), "int8", 32)
    with pytest.raises(ConfigError, match="model: not quantized"):
        save(tiny_gpt(), tmp_path / "x")
    model = quantize(tiny_gpt(), "int4", 32)
    with pytest.raises(ConfigError, match=r"already quantized \(int4\)"):
        quantize(model, "int8")
    with pytest.raises(CheckpointError, match=r"quantized \(int4\); save it with zhixing.quant.save"):
        model.save_pretrained(tmp_path / "plain")
    save(model, tmp_path / "q")
    config_file = tmp_path / "q" / "config.json"
    config = json.loads(config_file.read_text())
    config["quantization"]["group_size"] = 64  # the tensors hold groups of 32
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model.safetensors: .* holds 4 int4 groups per row for "
                                              r"128 inputs \(group size 32\), but .*config.json says "
                                              r"group_size=64"):
        zhixing.load(tmp_path / "q")
    config["quantization"] = {"method": "int3"}
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: quantization.method='int3' unknown"):
        zhixing.load(tmp_path / "q")
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "q"), str(tmp_path / "q2")])
    assert result.exit_code == 1 and "int3" in result.output and "Traceback" not in result.output

