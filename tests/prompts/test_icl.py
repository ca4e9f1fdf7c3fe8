"""In-context learning: label scores equal log-probabilities computed with transformers on a converted
tiny GPT-2; calibration, length normalisation, demonstration selection and the window limit."""

import pytest
import torch

from zhixing.errors import ConfigError
from zhixing.prompts.icl import InContextClassifier
from zhixing.tasks.data import TextExample
from zhixing.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")

WORDS = "good bad great terrible movie film it was fun boring the a so very positive negative".split()
TRAIN = [TextExample("fun movie", None, "pos"), TextExample("boring film", None, "neg"),
         TextExample("very fun film", None, "pos"), TextExample("a boring movie", None, "neg"),
         TextExample("so good", None, "pos")]
TEST = [TextExample("good fun", None, "pos"), TextExample("so boring", None, "neg")]
TEMPLATE = "Review: {text}\nSentiment: {mask}"
VERB = {"pos": "positive", "neg": "negative"}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    import random

    corpus = [" ".join(random.Random(i).choices(WORDS, k=8)) for i in range(300)]
    corpus += ["Review: Sentiment: N/A"] * 5
    tok = Tokenizer.train(iter(corpus), kind="byte_bpe", vocab_size=300, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    d = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(d)
    from zhixing.interop import from_hf

    return from_hf(d).eval(), hf, tok


def hf_scores(hf, prompts):
    """Σ log p(tail | prompt) with transformers, per prompt and label: prompts = [(ids, [tail per label])]."""
    out = torch.zeros(len(prompts), len(prompts[0][1]), dtype=torch.float64)
    for i, (c, tails) in enumerate(prompts):
        for j, w in enumerate(tails):
            ids = torch.tensor([c + w])
            logp = hf(ids).logits[0].log_softmax(-1)
            out[i, j] = sum(logp[len(c) - 1 + t, w[t]].double() for t in range(len(w)))
    return out


def test_label_scores_equal_transformers_log_probabilities(gpt2):
    model, hf, tok = gpt2
    icl = InContextClassifier(model, tok, TEMPLATE, VERB, shots=3, seed=1)
    assert icl.word_ids[0] == tok.encode(" positive", add_special_tokens=False).ids  # the space goes with it
    demos = icl.select(TEST, TRAIN)
    prompts = [icl.label_ids(d, e.text, None) for d, e in zip(demos, TEST)]
    text = tok.decode(prompts[0][0])
    assert text.rstrip().endswith("Review: good fun\nSentiment:") and text.count("Review:") == 4  # 3 demos
    for word, tail in zip(("positive", "negative"), prompts[0][1]):  # prompt + tail: the text's own ids
        assert tok.decode(prompts[0][0] + tail).endswith("Sentiment: " + word)
    expected = hf_scores(hf, prompts)
    torch.testing.assert_close(icl.scores(TEST, TRAIN).double(), expected, atol=1e-4, rtol=1e-4)
    norm = InContextClassifier(model, tok, TEMPLATE, VERB, shots=3, seed=1, normalize=True)
    lengths = torch.tensor([[len(w) for w in tails] for _, tails in prompts], dtype=torch.float64)
    torch.testing.assert_close(norm.scores(TEST, TRAIN).double(), expected / lengths, atol=1e-4, rtol=1e-4)


def test_contextual_calibration_divides_by_the_content_free_probabilities(gpt2):
    model, hf, tok = gpt2
    plain = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2, seed=3)
    cal = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2, seed=3, calibrate=True)
    demos = plain.select(TEST, TRAIN)[0]
    cf = hf_scores(hf, [plain.label_ids(demos, "N/A", None)]).float()
    p = plain.scores(TEST, TRAIN).softmax(-1) / cf.softmax(-1)
    torch.testing.assert_close(cal.scores(TEST, TRAIN).softmax(-1), p / p.sum(-1, keepdim=True),
                               atol=1e-4, rtol=1e-4)


def test_nearest_selection_puts_the_closest_demonstration_last(gpt2):
    model, _, tok = gpt2

    def embed(texts):  # bag of words: the closest example shares the most words
        return torch.tensor([[float(w in t.split()) for w in WORDS] for t in texts]) + 1e-3

    icl = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2, selection="nearest", embed=embed)
    demos = icl.select([TextExample("a boring movie indeed", None, "neg")], TRAIN)[0]
    assert demos[-1].text == "a boring movie" and len(demos) == 2
    cal = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2, selection="nearest", embed=embed,
                              calibrate=True)
    assert cal.scores(TEST, TRAIN).shape == (2, 2)


def test_demonstrations_that_do_not_fit_are_dropped_and_bad_settings_fail(gpt2):
    model, _, tok = gpt2
    icl = InContextClassifier(model, tok, TEMPLATE, VERB, shots=5)
    long = [TextExample(" ".join(["fun"] * 30), None, "pos")] * 5
    ids = icl.context_ids(long, "so boring", None)
    assert len(ids) <= model.config.max_seq_len and tok.decode(ids).rstrip().endswith("so boring\nSentiment:")
    with pytest.raises(ConfigError, match="nearest' needs embed"):
        InContextClassifier(model, tok, TEMPLATE, VERB, selection="nearest")
    with pytest.raises(ConfigError, match="selection 'best'"):
        InContextClassifier(model, tok, TEMPLATE, VERB, selection="best")


def test_a_word_that_merges_with_the_text_before_it_is_scored_from_where_the_labels_part(gpt2, tmp_path):
    model, _, _ = gpt2
    corpus = ["酒店很好", "房间很好", "我很好", "他很好"] * 20 + ["总之", "之", "差"] * 3
    tok = Tokenizer.train(iter(corpus), kind="bpe", vocab_size=30, min_frequency=2, show_progress=False)
    assert tok.encode("酒店总之很好", add_special_tokens=False).tokens[-1] == "很好"  # merged with 很
    icl = InContextClassifier(model, tok, "{text}总之很{mask}。", {"pos": "好", "neg": "差"}, shots=0)
    prompt, tails = icl.label_ids([], "酒店", None)
    for word, tail in zip("好差", tails):  # prompt + tail is the whole text's own tokenisation
        assert prompt + tail == [tok.bos_id] + tok.encode("酒店总之很" + word, add_special_tokens=False).ids
    assert [tok.id_to_token(i) for i in tails[0]] == ["很好"]
    assert [tok.id_to_token(i) for i in tails[1]] == ["很", "差"]


def test_demo_tokens_clips_each_demonstration_so_more_of_them_fit(gpt2):
    model, _, tok = gpt2
    long = [TextExample(" ".join(["fun", "movie"] * 40), None, "pos"),
            TextExample(" ".join(["boring", "film"] * 40), None, "neg")]
    whole = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2)
    clipped = InContextClassifier(model, tok, TEMPLATE, VERB, shots=2, demo_tokens=5)
    assert tok.encode("fun movie", add_special_tokens=False).tokens == ["f", "un", "Ġ", "mo", "vie"]
    assert clipped.demonstration(long[0]) == "Review: fun movie\nSentiment: positive"  # cut at a token end
    assert clipped.demonstration(TRAIN[0]) == whole.demonstration(TRAIN[0])  # short texts stay whole
    query = "\nSentiment:"
    assert tok.decode(whole.context_ids(long, "so boring", None)).count(query) == 1  # neither demo fits
    text = tok.decode(clipped.context_ids(long, "so boring", None))
    assert text.count(query) == 3 and f"{clipped.clip(long[1].text)}\nSentiment: negative" in text
    with pytest.raises(ConfigError, match="demo_tokens=0"):
        InContextClassifier(model, tok, TEMPLATE, VERB, demo_tokens=0)
