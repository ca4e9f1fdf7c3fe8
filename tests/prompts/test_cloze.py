"""Templates, verbalizers, cloze scoring with a masked LM and an ELECTRA discriminator, prompt-based
fine-tuning through the Trainer, PET's ensemble."""

import pytest
import torch

from zhixing.errors import ConfigError, DataError
from zhixing.models import build_model
from zhixing.prompts import ClozeClassifier, Template, Verbalizer, ensemble
from zhixing.prompts.cloze import collate
from zhixing.tasks.data import TextExample
from zhixing.tokenizers import Tokenizer

WORDS = "good bad great terrible movie film it was fun boring the a so very".split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("wordpiece")  # a WordPiece vocabulary with continuation pieces
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "!", "?", ",", *WORDS, "##fun", "##ly"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return Tokenizer.load(d)


def bert(tok):
    torch.manual_seed(0)
    return build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                       max_seq_len=64, dropout=0.0).eval()


EXAMPLES = [TextExample("fun movie fun", None, "pos"), TextExample("boring film boring", None, "neg"),
            TextExample("so fun the film", None, "pos"), TextExample("a boring movie", None, "neg")]


def test_template_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"exactly one \{mask\}"):
        Template("{text} it was great .")
    with pytest.raises(ConfigError, match=r"unknown field \{label\}"):
        Template("{text} {label} {mask}")
    with pytest.raises(ConfigError, match="exactly one"):
        Template("{text} {mask} {mask}")
    with pytest.raises(ConfigError, match=r"no \{text\}"):
        Template("it was {mask}")


def test_template_encodes_slots_and_truncates_the_text(tok):
    t = Template("{text_a} ? {mask} , {text_b}")
    assert t.uses_pair and t.render("a", "b", "yes") == "a ? yes , b"
    enc = t.encode(tok, "fun movie", "boring film", slot=[tok.mask_id] * 2)
    assert enc.ids[0] == tok.cls_id and enc.ids[-1] == tok.sep_id
    assert [enc.ids[i] for i in enc.slot] == [tok.mask_id] * 2
    long = " ".join(["fun"] * 50)
    enc = Template("{text} it was {mask} .").encode(tok, long, slot=[tok.mask_id], max_len=16)
    assert len(enc.ids) == 16 and enc.ids[enc.slot[0]] == tok.mask_id  # the text lost tokens, not the slot
    with pytest.raises(ConfigError, match="second text"):
        t.encode(tok, "fun", None, slot=[tok.mask_id])


def test_verbalizer_parses_and_reports_unspellable_words(tok):
    v = Verbalizer.parse("pos=great,good; neg=terrible")
    assert v.words == {"pos": ["great", "good"], "neg": ["terrible"]}
    assert Verbalizer.parse('{"pos": "great"}').words == {"pos": ["great"]}
    with pytest.raises(ConfigError, match=r"'宝' .*tokenises as \['\[UNK\]'\]"):
        Verbalizer({"pos": ["宝"]}).pieces(tok)
    pieces = tok.encode("greatfun", add_special_tokens=False).tokens
    assert len(pieces) > 1  # a multi-piece word is allowed, unless one token is asked for
    ids = tok.encode("greatfun", add_special_tokens=False).ids
    assert Verbalizer({"pos": ["greatfun"]}).pieces(tok)[0][2] == ids
    with pytest.raises(ConfigError, match="not one token .*tokenises as"):
        Verbalizer({"pos": ["greatfun"]}).pieces(tok, single_token=True)
    with pytest.raises(ConfigError, match="label=word"):
        Verbalizer.parse("pos great")


def test_mlm_scores_are_mean_log_probs_of_the_word_pieces(tok):
    model = bert(tok)
    verb = {"pos": ["great", "greatfun"], "neg": ["terrible", "terriblefun"]}  # 1- and 2-piece words
    c = ClozeClassifier(model, tok, "{text} it was {mask} .", verb)
    assert c.scorer == "mlm" and len(c.lengths) == 2
    scores = c.scores(EXAMPLES)
    for i, e in enumerate(EXAMPLES):
        expected = []
        for label in ("pos", "neg"):
            per_word = []
            for w in verb[label]:
                ids = tok.encode(w, add_special_tokens=False).ids
                enc = c.template.encode(tok, e.text, None, [tok.mask_id] * len(ids))
                logp = model(torch.tensor([enc.ids])).logits[0].log_softmax(-1)
                per_word.append(torch.stack([logp[p, t] for p, t in zip(enc.slot, ids)]).mean())
            expected.append(torch.stack(per_word).mean())
        torch.testing.assert_close(scores[i], torch.stack(expected).detach())


def test_electra_discriminator_scores_the_filled_word_as_original(tok):
    torch.manual_seed(0)
    pair = build_model("electra-tiny", vocab_size=tok.vocab_size, max_seq_len=64, dropout=0.0).eval()
    verb = {"pos": ["great", "greatfun"], "neg": "terrible"}
    c = ClozeClassifier(pair, tok, "{text} it was {mask} .", verb)
    assert c.scorer == "rtd" and c.model is pair.discriminator
    scores = c.scores(EXAMPLES[:2])
    e = EXAMPLES[1]
    ids = tok.encode("greatfun", add_special_tokens=False).ids
    enc = c.template.encode(tok, e.text, None, ids)
    d = pair.discriminator(torch.tensor([enc.ids])).logits[0]
    great = torch.nn.functional.logsigmoid(-d[enc.slot]).mean()
    ids = tok.encode("great", add_special_tokens=False).ids
    enc = c.template.encode(tok, e.text, None, ids)
    d = pair.discriminator(torch.tensor([enc.ids])).logits[0]
    great2 = torch.nn.functional.logsigmoid(-d[enc.slot]).mean()
    torch.testing.assert_close(scores[1, 0], ((great + great2) / 2).detach())
    gen = ClozeClassifier(pair, tok, "{text} it was {mask} .", verb, scorer="mlm")
    assert gen.model is pair.generator


def test_prompt_finetuning_learns_and_keeps_the_best_dev_weights(tok):
    model = bert(tok)
    verb = {"pos": ["great", "good"], "neg": ["terrible", "bad"]}
    c = ClozeClassifier(model, tok, "{text} it was {mask} .", verb)
    summary = c.finetune(EXAMPLES * 2, EXAMPLES, max_steps=20, lr=3e-3, eval_interval=10, batch_size=8)
    assert summary["best_dev"]["accuracy"] == 1.0
    assert c.evaluate(EXAMPLES)["accuracy"] == 1.0  # the kept weights are the best dev ones


def test_ensemble_averages_the_patterns_log_probs(tok):
    model = bert(tok)
    verb = {"pos": "great", "neg": "terrible"}
    a = ClozeClassifier(model, tok, "{text} it was {mask} .", verb)
    b = ClozeClassifier(model, tok, "{mask} ! {text}", verb)
    expected = ((a.log_probs(EXAMPLES) + b.log_probs(EXAMPLES)) / 2).log_softmax(-1)
    torch.testing.assert_close(ensemble([a, b], EXAMPLES), expected)
    with pytest.raises(ConfigError, match="disagree"):
        ensemble([a, ClozeClassifier(model, tok, "{mask} {text}", {"x": "great", "y": "terrible"})], EXAMPLES)


def test_unknown_label_and_missing_head(tok):
    model = bert(tok)
    c = ClozeClassifier(model, tok, "{text} {mask}", {"pos": "great", "neg": "terrible"})
    with pytest.raises(DataError, match="label 'meh' has no verbalizer words"):
        c.features([TextExample("fun", None, "meh")])
    batch = collate(c.features(EXAMPLES), tok.pad_id)
    assert batch["input_ids"].shape[:2] == (4, 1) and batch["positions"].shape == (4, 1, 1)
    torch.manual_seed(0)
    plain = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=64, head="none")
    with pytest.raises(ConfigError, match="needs a model with a 'mlm' head"):
        ClozeClassifier(plain, tok, "{text} {mask}", {"pos": "great"})


def test_label_word_search_picks_the_best_dev_assignment(tok):
    from zhixing.prompts.auto import search_label_words

    model = bert(tok)
    verb, report = search_label_words(model, tok, "{text} it was {mask} .", EXAMPLES, EXAMPLES, top_k=3)
    assert set(verb.labels) == {"neg", "pos"} and len(report["candidates"]["pos"]) == 3
    chosen = ClozeClassifier(model, tok, "{text} it was {mask} .", verb)
    assert chosen.evaluate(EXAMPLES)["accuracy"] == report["dev_accuracy_zero_shot"]
    for p in report["candidates"]["pos"]:  # no other assignment of the candidates does better
        for n in report["candidates"]["neg"]:
            if p != n:
                other = ClozeClassifier(model, tok, "{text} it was {mask} .", {"neg": n, "pos": p})
                assert other.evaluate(EXAMPLES)["accuracy"] <= report["dev_accuracy_zero_shot"]


def test_autoprompt_triggers_lower_the_loss(tok):
    from zhixing.prompts.auto import search_triggers

    model = bert(tok)
    c = ClozeClassifier(model, tok, "{text} [T] [T] {mask} .", {"pos": "great", "neg": "terrible"})
    assert c.triggers == [tok.mask_id] * 2
    out = search_triggers(c, EXAMPLES, iterations=6, candidates=5, batch_size=4)
    assert out["loss"] == sorted(out["loss"], reverse=True)  # each accepted step lowers the loss
    assert all(t.isalpha() for t in out["triggers"]) and len(out["triggers"]) == 2
    assert all(p.requires_grad for p in model.parameters())


def test_pet_distills_the_ensemble_into_a_plain_classifier(tok):
    """PET's last step: the ensemble's soft labels on unlabelled texts train a seq_cls student (its labels in
    another order than the patterns'), which then classifies without a template."""
    from zhixing.prompts.pet import distill_ensemble

    verb = {"pos": ["great", "good"], "neg": ["terrible", "bad"]}
    a = ClozeClassifier(bert(tok), tok, "{text} it was {mask} .", verb)  # one model per pattern, as in PET
    b = ClozeClassifier(bert(tok), tok, "{mask} ! {text}", verb)
    for c in (a, b):
        c.finetune(EXAMPLES * 2, EXAMPLES, max_steps=20, lr=3e-3, eval_interval=10, batch_size=8)
    teacher = ensemble([a, b], EXAMPLES)
    assert [a.labels[i] for i in teacher.argmax(-1).tolist()] == [e.label for e in EXAMPLES]
    unlabeled = [TextExample(e.text, None, None) for e in EXAMPLES]

    def student(names):
        torch.manual_seed(1)
        s = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=64, head="seq_cls", num_labels=len(names), label_names=names)
        s.tokenizer = tok
        return s

    s = student(["neg", "pos"])
    out = distill_ensemble([a, b], unlabeled * 4, s, dev=EXAMPLES, max_steps=30, lr=3e-3, eval_interval=10,
                           batch_size=8)
    assert out["agreement"] == 1.0 and out["best_dev"]["accuracy"] == 1.0
    from zhixing.tasks import classify

    probs, _ = classify.probabilities(s, tok, EXAMPLES, 64)
    assert [s.config.label_names[i] for i in probs.argmax(-1).tolist()] == [e.label for e in EXAMPLES]
    with pytest.raises(ConfigError, match=r"student's labels \['x', 'pos'\] differ"):
        distill_ensemble([a, b], unlabeled, student(["x", "pos"]))
    with pytest.raises(ConfigError, match="no unlabelled examples"):
        distill_ensemble([a, b], [], s)
