"""`zhixing prompt MODEL`: prompt-based classification from the command line (docs/prompts.md).

    # zero-shot cloze with a masked LM (or an ELECTRA discriminator: --scorer rtd / auto)
    zhixing prompt bert-dir --template "{text} 总之很{mask}。" --verbalizer "1=好;0=差" --eval dev.csv
    # prompt-based fine-tuning (PET / LM-BFF) on a few examples, then the eval set; --save keeps the model
    zhixing prompt bert-dir --mode finetune --train train16.csv --dev dev16.csv --eval dev.csv ...
    # in-context learning with a causal LM: 8 demonstrations from --train, calibrated
    zhixing prompt gpt-dir --mode icl --template "Review: {text}\\nSentiment: {mask}" \\
        --verbalizer "1=positive;0=negative" --train train.csv --shots 8 --calibrate --eval dev.csv
    # automatic label words (LM-BFF), searched on --train and picked on --dev
    zhixing prompt bert-dir --mode search-words --template "{text} it was {mask} ." --train t.csv --dev d.csv

Prints one JSON object: the metrics on --eval (labelled), or one JSON line per example (unlabelled or
--input TEXT).
"""

from __future__ import annotations

import json

import click

MODES = ("zero-shot", "finetune", "icl", "search-words")


@click.command("prompt")
@click.argument("model_path", metavar="MODEL")
@click.option("--template", required=True,
              help="e.g. '{text} 总之很{mask}。' ({text}, {text_b}, {mask}, [T]).")
@click.option("--verbalizer", default="",
              help="label=word[,word];... or a JSON object (not for search-words).")
@click.option("--mode", type=click.Choice(MODES), default="zero-shot", show_default=True)
@click.option("--scorer", type=click.Choice(["auto", "mlm", "rtd"]), default="auto", show_default=True,
              help="cloze modes: the masked-LM head or the ELECTRA discriminator (auto: rtd when present).")
@click.option("--train", "train_path", default=None, help="Labelled examples (fine-tuning, demonstrations).")
@click.option("--dev", "dev_path", default=None, help="Labelled dev examples (best checkpoint, word search).")
@click.option("--eval", "eval_path", default=None, help="Examples to score (CSV/TSV/JSONL).")
@click.option("--input", "texts", multiple=True, help="A text to classify; repeatable.")
@click.option("--text-column", default="", help="Text column ('' = sentence/text/review/...).")
@click.option("--pair-column", default="", help="Second-text column of pairs ({text_b}).")
@click.option("--label-column", default="label", show_default=True)
@click.option("--shots", default=4, show_default=True, help="icl: demonstrations per prompt.")
@click.option("--select", "selection", type=click.Choice(["random", "nearest"]), default="random",
              show_default=True, help="icl: demonstrations at random or nearest by sentence embedding.")
@click.option("--embed", "embed_model", default="", help="icl nearest: a sentence-embedding model (MiniLM).")
@click.option("--calibrate", is_flag=True, help="icl: contextual calibration (content-free 'N/A').")
@click.option("--normalize", is_flag=True, help="icl: length-normalised label log-likelihoods.")
@click.option("--demo-tokens", default=None, type=click.IntRange(min=1),
              help="icl: cut each demonstration's text to its first N tokens (more of them fit the window).")
@click.option("--max-steps", default=200, show_default=True, help="finetune: optimizer steps.")
@click.option("--lr", default=1e-5, show_default=True, help="finetune: peak learning rate.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--max-len", default=128, show_default=True, help="Tokens per filled template.")
@click.option("--seed", default=0, show_default=True)
@click.option("--save", "save_dir", default="", help="finetune: write the fine-tuned model here.")
@click.option("--device", default="cpu", show_default=True)
def prompt_cmd(model_path, template, verbalizer, mode, scorer, train_path, dev_path, eval_path, texts,
               text_column, pair_column, label_column, shots, selection, embed_model, calibrate, normalize,
               demo_tokens, max_steps, lr, batch_size, max_len, seed, save_dir, device) -> None:
    """Classify with a prompt: zero-shot or fine-tuned cloze (PET), in-context learning, label-word search."""
    import torch

    from zhixing import hub
    from zhixing.prompts import ClozeClassifier, InContextClassifier, Verbalizer
    from zhixing.tasks.data import TextExample, read_table

    def read(path, labeled=True):
        if path is None:
            return None
        return read_table(path, text_column=text_column or None, pair_column=pair_column or None,
                          label_column=label_column, require_label=labeled)

    def need(value, flag):
        if not value:
            raise click.UsageError(f"--mode {mode} needs {flag}")
        return value

    torch.manual_seed(seed)
    model = hub.load(model_path).to(device)
    tok = model.tokenizer or hub.load_tokenizer(model_path)
    train, dev = read(train_path), read(dev_path)
    if texts:
        examples = [TextExample(t, None, None) for t in texts]
    else:
        examples = read(need(eval_path, "--eval or --input"), labeled=False) if mode != "search-words" else []
    labeled = bool(examples) and all(e.label is not None for e in examples)
    if mode == "search-words":
        from zhixing.prompts.auto import search_label_words

        _, report = search_label_words(model, tok, template, need(train, "--train"), need(dev, "--dev"),
                                       max_len=max_len)
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    verb = Verbalizer.parse(need(verbalizer, "--verbalizer"))
    if mode == "icl":
        embed = None
        if selection == "nearest":
            from zhixing.tasks.pretrained import EmbeddingPipeline

            pipe = EmbeddingPipeline(need(embed_model, "--embed for --select nearest"), device=device)
            embed = lambda xs: pipe(list(xs))  # noqa: E731  (n, dim)
        clf = InContextClassifier(model, tok, template, verb, shots=shots, selection=selection,
                                  normalize=normalize, calibrate=calibrate, seed=seed, embed=embed,
                                  demo_tokens=demo_tokens)
        scores = clf.scores(examples, need(train, "--train") if shots else [])
    else:
        clf = ClozeClassifier(model, tok, template, verb, scorer=scorer, max_len=max_len)
        if mode == "finetune":
            summary = clf.finetune(need(train, "--train"), dev, max_steps=max_steps, lr=lr,
                                   batch_size=batch_size, seed=seed, device=device,
                                   eval_interval=max(1, max_steps // 10) if dev else 0, warmup_steps=0)
            click.echo(json.dumps({"trained_steps": summary["step"], "best_dev": summary["best_dev"]}),
                       err=True)
            if save_dir:
                clf.model.save_pretrained(save_dir)
                tok.save(save_dir)
        scores = clf.scores(examples)
    probs = scores.log_softmax(-1).exp()
    if labeled:
        from zhixing.tasks.metrics import classification_metrics

        pred = [clf.labels[i] for i in probs.argmax(-1).tolist()]
        metrics = classification_metrics([e.label for e in examples], pred)
        click.echo(json.dumps({"mode": mode, "examples": len(examples), **metrics}))
        return
    for e, row in zip(examples, probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        click.echo(json.dumps({"text": e.text, "label": clf.labels[best],
                               "scores": {y: round(p, 6) for y, p in zip(clf.labels, row)}},
                              ensure_ascii=False))
