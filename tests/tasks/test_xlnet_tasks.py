"""XLNet in the fine-tuning tasks: the task encoders lay out inputs as XLNet's tokenizer does
(A <sep> B <sep> <cls>, token types 0 / 1 / 2, LEFT padding with type 3) — checked equal to transformers'
XLNetTokenizerFast on a tiny tokenizer.json — and classify / ner / qa fine-tune a tiny random XLNet saved
by transformers (so loaded through from_hf), then evaluate, predict and serve a pipeline from the run."""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner
from task_synth import WORDS, ner_sentences, sentiment_rows
from tokenizers import trainers

import zhixing
from zhixing.cli import main
from zhixing.tasks import classify, ner, qa
from zhixing.tasks.data import QAExample, TaggedSentence, TextExample, collate
from zhixing.tasks.finetune import finetune, finetune_config
from zhixing.tokenizers import Tokenizer
from zhixing.tokenizers.spiece import XLNET_ROLES, xlnet_backend, xlnet_template

transformers = pytest.importorskip("transformers")

SPECIALS = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]  # XLNet's ids 0..8
# every epoch is trained (no early stop on the first epochs' plateau): the assertions are on what is learnt
FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1",
        "early_stopping_patience=0"]


@pytest.fixture(scope="module")
def tiny_xlnet(tmp_path_factory):
    """A random 2-layer XLNetLMHeadModel saved by transformers, with an XLNet Unigram tokenizer (trained
    by `tokenizers` on the synthetic words, so pieces like "▁john" and bare "▁" both occur)."""
    corpus = [" ".join(random.Random(i).choices(WORDS, k=12)) for i in range(300)] + ["jo hn smi th"] * 5
    backend = xlnet_backend([("<unk>", 0.0)], unk_id=0, charsmap=None)
    backend.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=80, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False))
    xlnet_template(backend, XLNET_ROLES)
    tok = Tokenizer(backend, "unigram", XLNET_ROLES, ["<eop>", "<eod>"], padding_side="left", pad_type_id=3,
                    tokenizer_class="XLNetTokenizer")
    d = tmp_path_factory.mktemp("tiny-xlnet")
    torch.manual_seed(0)
    cfg = transformers.XLNetConfig(vocab_size=tok.vocab_size, d_model=32, n_layer=2, n_head=2, d_inner=64,
                                   dropout=0.0, mem_len=None, pad_token_id=tok.pad_id)
    transformers.XLNetLMHeadModel(cfg).save_pretrained(d)
    tok.save(d)
    return d


@pytest.fixture(scope="module")
def hf_tok(tiny_xlnet):
    hf = transformers.AutoTokenizer.from_pretrained(tiny_xlnet)
    assert type(hf).__name__.startswith("XLNetTokenizer") and hf.is_fast and hf.padding_side == "left"
    return hf


def test_classify_inputs_equal_transformers(tiny_xlnet, hf_tok):
    tok = zhixing.load_tokenizer(tiny_xlnet)
    pairs = [("the film was good", "john visited paris"), ("bad", "a very very awful plot in london"),
             ("acme corp", "x")]
    feats = classify.encode([TextExample(a, b, None) for a, b in pairs], tok, 64)
    ours = collate(feats, tok.layout)
    theirs = hf_tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt",
                    return_token_type_ids=True)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    real = theirs["attention_mask"].bool()  # padding: XLNet's type 3 (transformers 5 writes 0 there)
    assert torch.equal(ours["token_type_ids"][real], theirs["token_type_ids"][real])
    assert bool((ours["token_type_ids"][~real] == 3).all()) and bool((~real).any())
    assert (ours["input_ids"][:, -1] == tok.cls_id).all() and (ours["token_type_ids"][:, -1] == 2).all()


def test_ner_windows_equal_transformers_word_ids(tiny_xlnet, hf_tok):
    """ids equal transformers' for pre-split words; labels sit on each word's first piece (word_ids),
    -100 on <sep> / <cls> and on left padding."""
    tok = zhixing.load_tokenizer(tiny_xlnet)
    sents = [TaggedSentence(["john", "smith", "visited", "paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
             TaggedSentence(["acme", "corp"], ["B-ORG", "I-ORG"])]
    names = ["O", "B-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    feats = ner.encode(sents, tok, 32, names)
    theirs = hf_tok([s.tokens for s in sents], is_split_into_words=True, padding=True)
    batch = collate(feats, tok.layout)
    assert batch["input_ids"].tolist() == theirs["input_ids"]
    assert batch["attention_mask"].tolist() == theirs["attention_mask"]
    for row, s in enumerate(sents):
        word_ids = theirs.word_ids(row)
        want = [-100 if w is None or (i and word_ids[i - 1] == w) else names.index(s.tags[w])
                for i, w in enumerate(word_ids)]
        assert batch["labels"][row].tolist() == want
    assert any(tok.id_to_token(i) == "▁" for f in feats for i in f["input_ids"])  # a bare "▁" piece occurs


def test_qa_windows_equal_transformers_and_spans_survive_left_padding(tiny_xlnet, hf_tok):
    tok = zhixing.load_tokenizer(tiny_xlnet)
    cfg = finetune_config("qa", model=str(tiny_xlnet), max_seq_len=64)
    context = "john visited paris and acme corp"
    ex = [QAExample("0", "where", context, [("paris", context.index("paris"))]),
          QAExample("1", "who works at the very big acme corp", "acme corp", [("acme", 0)])]
    feats = qa.encode(ex, tok, cfg)
    theirs = hf_tok([e.question for e in ex], [e.context for e in ex], return_token_type_ids=True)
    assert [f["input_ids"] for f in feats] == theirs["input_ids"]
    assert [f["token_type_ids"] for f in feats] == theirs["token_type_ids"]
    batch = collate(feats, tok.layout)
    for row in range(len(feats)):  # after left padding the labels still point at the answer's pieces
        start, end = batch["labels"][row].tolist()
        assert tok.decode(batch["input_ids"][row, start:end + 1].tolist()) == ex[row].answers[0][0]
    # a window without the answer points at <cls>, XLNet's last token
    short = finetune_config("qa", model=str(tiny_xlnet), max_seq_len=16, doc_stride=2, max_query_len=4)
    windows = qa.encode(ex[:1], tok, short)
    cls = [f for f in windows if f["labels"] == [len(f["input_ids"]) - 1] * 2]
    hits = [f for f in windows if f not in cls]
    assert cls and hits and all(f["input_ids"][-1] == tok.cls_id for f in windows)
    assert all(tok.decode(f["input_ids"][f["labels"][0]:f["labels"][1] + 1]) == "paris" for f in hits)


def test_finetune_classify_on_xlnet_evaluate_predict_pipeline(tiny_xlnet, tmp_path):
    train = [TextExample(t, None, lab) for t, lab in sentiment_rows(160, 0)]
    dev = [TextExample(t, None, lab) for t, lab in sentiment_rows(40, 1)]
    cfg = finetune_config("classify", model=str(tiny_xlnet), epochs=4, max_seq_len=32)
    summary = finetune(cfg, name="clf", train_examples=train, dev_examples=dev,
                       train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["accuracy"] >= 0.95
    run = tmp_path / "clf"
    model = zhixing.load(run)
    assert model.config.arch == "xlnet" and model.config.head == "seq_cls"
    clf = zhixing.pipeline("classify", run)
    assert [r["label"] for r in clf(["the plot was very awful", "the movie was very fine"])] == ["neg", "pos"]
    dev_tsv = tmp_path / "dev.tsv"
    dev_tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(30, 3)))
    res = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(dev_tsv)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["accuracy"] >= 0.9


def test_finetune_ner_on_xlnet_with_cli_and_pipeline(tiny_xlnet, tmp_path):
    def conll(path, n, seed):
        rows = ("\n".join(f"{w}\t{t}" for w, t in s) for s in ner_sentences(n, seed))
        path.write_text("\n\n".join(rows) + "\n")

    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    conll(train, 200, 0)
    conll(dev, 40, 1)
    args = ["finetune", "--task", "ner", "--model", str(tiny_xlnet), "--train", str(train), "--dev", str(dev),
            "epochs=6", "max_seq_len=32", "name=ner", *(f"train.{x}" for x in FAST),
            f"train.out_dir={tmp_path}"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "ner" / "summary.json").read_text())
    assert summary["dev"]["f1"] >= 0.9
    tagger = zhixing.pipeline("ner", tmp_path / "ner")
    text = "john smith  visited paris"
    ents = tagger(text)
    assert [(e["type"], e["text"]) for e in ents] == [("PER", "john smith"), ("LOC", "paris")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in ents)
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "ner"), "--text", "acme corp"])
    assert res.exit_code == 0, res.output
    assert [e["type"] for e in json.loads(res.output.strip().splitlines()[-1])["output"]] == ["ORG"]


def test_finetune_qa_on_xlnet(tiny_xlnet, tmp_path):
    def examples(n, seed):
        out = []
        for i in range(n):
            r = random.Random(seed * 1000 + i)
            words = r.choices([w for w in WORDS if w != "paris"], k=12)
            words[r.randrange(12)] = "paris"
            context = " ".join(words)
            answer = [("paris", context.index("paris"))]
            out.append(QAExample(f"{seed}-{i}", "where is paris", context, answer))
        return out

    cfg = finetune_config("qa", model=str(tiny_xlnet), epochs=6, max_seq_len=24, doc_stride=8,
                          max_query_len=6)
    summary = finetune(cfg, name="qa", train_examples=examples(150, 0), dev_examples=examples(30, 1),
                       train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert summary["dev"]["exact_match"] >= 90.0
    context = "the film was good and john visited paris in a very fine plot"
    ans = zhixing.pipeline("qa", tmp_path / "qa")({"question": "where is paris", "context": context})
    assert ans["answer"] == "paris" and context[ans["start"]:ans["end"]] == "paris"


def test_a_zhixing_xlnet_checkpoint_gets_a_fresh_summary_and_keeps_its_backbone(tiny_xlnet, tmp_path):
    from zhixing.tasks.finetune import load_for_task

    lm = zhixing.load(tiny_xlnet)  # the LM checkpoint, converted and saved in zhixing's format
    assert lm.config.head == "lm"
    lm.save_pretrained(tmp_path)
    lm.tokenizer.save(tmp_path)
    with pytest.warns(UserWarning, match=r"4 tensors are freshly initialised \(classifier\.proj\.bias, "
                                         r"classifier\.proj\.weight, summary\.bias, summary\.weight\)"):
        model = load_for_task(str(tmp_path), "seq_cls", ["neg", "pos"])
    assert model.config.arch == "xlnet" and model.tokenizer.padding_side == "left"
    for name in ("layers.1.attn.r.weight", "tok_embed.weight", "mask_emb"):
        assert torch.equal(model.state_dict()[name], lm.state_dict()[name])


def test_layouts_are_read_from_each_tokenizers_template(tiny_bert, tiny_xlnet):
    bert, xlnet = zhixing.load_tokenizer(tiny_bert), zhixing.load_tokenizer(tiny_xlnet)
    b, x = bert.layout, xlnet.layout
    cls, sep = bert.cls_id, bert.sep_id
    assert (b.single, b.pair, b.pair_types, b.text_types) == (((cls,), (sep,)), ((cls,), (sep,), (sep,)),
                                                             ((0,), (0,), (1,)), (0, 1))
    assert (b.pad_left, b.pad_type_id) == (False, 0) and b.build([7, 8], [9]).cls == 0
    cls, sep = xlnet.cls_id, xlnet.sep_id
    assert (x.single, x.pair, x.pair_types, x.text_types) == (((), (sep, cls)), ((), (sep,), (sep, cls)),
                                                             ((), (0,), (1, 2)), (0, 1))
    assert (x.pad_left, x.pad_type_id) == (True, 3)
    built = x.build([7, 8], [9])
    assert (built.ids, built.types, built.starts, built.cls) == ([7, 8, sep, 9, sep, cls], [0, 0, 0, 1, 1, 2],
                                                                 (0, 3), 5)
    assert x.spread(["a", "b"]) == ["a", "b", None, None]


def test_a_wordpiece_tokenizer_takes_xlnets_layout(tiny_bert):
    from zhixing.tokenizers import TokenizerError
    from zhixing.tokenizers.layout import apply_layout

    tok = zhixing.load_tokenizer(tiny_bert)
    apply_layout(tok, None)  # a family without a layout of its own keeps the tokenizer's
    assert tok.layout.single == ((tok.cls_id,), (tok.sep_id,))
    apply_layout(tok, "xlnet")
    x = tok.layout
    assert x.pair == ((), (tok.sep_id,), (tok.sep_id, tok.cls_id)) and x.pair_types[-1] == (1, 2)
    assert (x.pad_left, x.pad_type_id) == (True, 3)
    with pytest.raises(TokenizerError, match="unknown tokenizer layout 'gpt'; known: xlnet"):
        apply_layout(tok, "gpt")
