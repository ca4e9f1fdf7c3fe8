"""Knowledge representation learning (zhixing.apps.kg.embed, kge_data): the reader and its errors, the
score identities that let training and ranking share one formula, filtered ranks computed by hand, a toy
graph every model must learn, the run directory (safetensors + JSON) and the `embed` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from zhixing.apps.kg.embed import ComplEx, EmbedConfig, KGEmbedding, RotatE, TransE, evaluate, train
from zhixing.apps.kg.kge_data import AnswerIndex, KGData, filtered_ranks, load_kg, read_triples
from zhixing.cli.app_kg_embed import embed_cmd
from zhixing.errors import CheckpointError, ConfigError, DataError

# -- a toy graph: a chain e0 → e1 → ... → e19 with "next" and its inverse "prev" ----------------------------
# Every "prev" triple is in train, "next" only for the first 12 links: the held-out "next" links can be
# inferred only by learning that next is the inverse of prev (TransE: r_next = −r_prev; RotatE: θ_next =
# −θ_prev; ComplEx: r_next = conj(r_prev)). A random ranking of 20 entities has MRR H_20/20 ≈ 0.18.
N = 20


def toy_graph() -> KGData:
    nxt = [(i, 0, i + 1) for i in range(N - 1)]
    prv = [(i + 1, 1, i) for i in range(N - 1)]
    splits = {
        "train": torch.tensor(prv + nxt[:12]),
        "valid": torch.tensor(nxt[12:14]),
        "test": torch.tensor(nxt[14:]),
    }
    return KGData([f"e{i}" for i in range(N)], ["next", "prev"], splits)


def write_graph(directory: Path, graph: KGData) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, triples in graph.splits.items():
        names = [(graph.entities[h], graph.relations[r], graph.entities[t]) for h, r, t in triples.tolist()]
        lines = ["\t".join(triple) + "\n" for triple in names]
        (directory / f"{name}.txt").write_text("".join(lines), encoding="utf-8")
    return directory


TOY = dict(dim=8, gamma=2.0, negatives=8, batch_size=16, steps=150, lr=0.05, eval_every=50, eval_valid=0)


# -- reading ------------------------------------------------------------------------------------------------


def test_reader_vocabularies_and_ids(tmp_path):
    graph = load_kg(write_graph(tmp_path / "toy", toy_graph()))
    assert graph.relations == ["prev", "next"]  # in order of first appearance in train.txt
    assert graph.entities[:3] == ["e1", "e0", "e2"]  # train first: (e1, prev, e0), (e2, prev, e1), ...
    assert sorted(graph.entities, key=lambda e: int(e[1:])) == toy_graph().entities
    h, r, t = graph.splits["test"][0].tolist()
    assert (graph.entities[h], graph.relations[r], graph.entities[t]) == ("e14", "next", "e15")
    # an entity that appears only in test still gets an id (after the train entities)
    (tmp_path / "toy" / "test.txt").write_text("e1\tnext\tnew-entity\n", encoding="utf-8")
    graph = load_kg(tmp_path / "toy")
    assert graph.entities[-1] == "new-entity" and graph.splits["test"].tolist() == [[0, 1, N]]


def test_reader_errors_name_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a\tr\tb\n\na\tr b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt:3: expected head<TAB>relation<TAB>tail.*found 2"):
        read_triples(path)
    write_graph(tmp_path / "g", toy_graph())
    (tmp_path / "g" / "valid.txt").write_text("e1\tnext\te2\ne2\tfather_of\te3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"valid\.txt: triple 2 .*'father_of' does not occur in train\.txt"):
        load_kg(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_kg(tmp_path / "missing")


def test_real_datasets_sizes(shared_data):
    """The ConvE release: FB15k-237 14,541 entities / 237 relations, WN18RR 40,943 / 11."""
    for name, sizes, entities, relations in [("WN18RR", (86835, 3034, 3134), 40943, 11)]:
        graph = load_kg(shared_data / "kg" / name)
        assert tuple(len(graph.splits[s]) for s in ("train", "valid", "test")) == sizes
        assert (graph.num_entities, graph.num_relations) == (entities, relations)


# -- scores -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        TransE(7, 3, 5, gamma=6.0, p_norm=1),
        TransE(7, 3, 5, gamma=6.0, p_norm=2),
        RotatE(7, 3, 5, gamma=6.0),
        ComplEx(7, 3, 5),
    ],
    ids=lambda m: m.name,
)
def test_scores_follow_their_formulas_in_both_directions(model):
    """score_all(head, r, "tail")[t] and score_all(tail, r, "head")[h] both equal f(h, r, t) as written in
    the docstrings, computed here directly from the parameters."""
    torch.nn.init.normal_(model.entity)
    torch.nn.init.normal_(model.relation)
    h, r, t = torch.tensor([0, 3, 6, 2]), torch.tensor([0, 1, 2, 2]), torch.tensor([5, 3, 1, 4])
    E, R = model.entity.detach(), model.relation.detach()
    if isinstance(model, TransE):
        expected = model.gamma - torch.linalg.vector_norm(E[h] + R[r] - E[t], ord=model.p_norm, dim=-1)
    else:
        c = lambda x: torch.complex(*x.chunk(2, -1))  # [Re | Im] → complex
        if isinstance(model, RotatE):
            rel = torch.polar(torch.ones_like(R[r]), R[r] * math.pi / model.init)  # e^{iθ}
            expected = model.gamma - (c(E[h]) * rel - c(E[t])).abs().sum(-1)
        else:
            expected = (c(E[h]) * c(R[r]) * c(E[t]).conj()).real.sum(-1)
    with torch.no_grad():
        torch.testing.assert_close(model.score(h, r, t), expected, atol=1e-5, rtol=1e-5)
        tails = model.score_all(h, r, "tail", budget=37)  # a tiny budget: many entity chunks
        heads = model.score_all(t, r, "head")
        torch.testing.assert_close(tails.gather(1, t[:, None])[:, 0], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(heads.gather(1, h[:, None])[:, 0], expected, atol=1e-5, rtol=1e-5)
        # the negatives path (training) scores the same as the all-entity path (evaluation)
        candidates = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 2, 3]])
        torch.testing.assert_close(
            model.score_candidates(h, r, candidates, "tail"),
            tails.gather(1, candidates),
            atol=1e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize(
    "model",
    [
        TransE(7, 3, 5, gamma=6.0, reciprocal=True),
        RotatE(7, 3, 5, gamma=6.0, reciprocal=True),
        ComplEx(7, 3, 5, True),
    ],
    ids=lambda m: m.name,
)
def test_reciprocal_relations_ask_heads_as_tails_of_the_inverse(model):
    """With reciprocal relations the table holds 2R rows, and the head scores of (?, r, t) are the tail
    scores of (t, r + R, ?): their own parameters, not r's inverted."""
    assert model.relation.shape[0] == 2 * 3
    torch.nn.init.normal_(model.entity)
    torch.nn.init.normal_(model.relation)
    t, r = torch.tensor([0, 3, 6]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        heads = model.score_all(t, r, "head")
        torch.testing.assert_close(heads, model.score_all(t, r + 3, "tail"))
        # and they are not what the shared relation would give: the inverse rows are free parameters
        plain = type(model).__new__(type(model))
        plain.__dict__.update(model.__dict__)
        plain.reciprocal = False
        assert not torch.allclose(heads, plain.score_all(t, r, "head"))
        # the forward relation rows alone decide tail prediction and score()
        h = torch.tensor([1, 2, 5])
        torch.testing.assert_close(
            model.score(h, r, t), model.score_all(h, r, "tail").gather(1, t[:, None])[:, 0]
        )


# -- filtered ranking, by hand -------------------------------------------------------------------------------


def hand_graph() -> tuple[KGData, TransE]:
    """Entities a, b, c, d on a line at 0, 1, 2.2, 3.1; one relation r = +1; TransE with d = 1, γ = 0, so
    f(h, r, t) = −|h + 1 − t|. train: (a,r,b), (b,r,c); test: (a,r,c), (c,r,d)."""
    a, b, c, d = range(4)
    splits = {"train": torch.tensor([[a, 0, b], [b, 0, c]]), "test": torch.tensor([[a, 0, c], [c, 0, d]])}
    graph = KGData(["a", "b", "c", "d"], ["r"], splits)
    model = TransE(4, 1, 1, gamma=0.0)
    with torch.no_grad():
        model.entity.copy_(torch.tensor([[0.0], [1.0], [2.2], [3.1]]))
        model.relation.copy_(torch.tensor([[1.0]]))
    return graph, model


def test_filtered_ranks_computed_by_hand():
    graph, model = hand_graph()
    # (a, r, ?): query 0 + 1 = 1 → scores a −1, b 0, c −1.2, d −2.1. The answer c is beaten by a and b
    #   (raw rank 3); b is a known answer (train (a,r,b)), so the filtered rank is 2.
    # (?, r, c): query 2.2 − 1 = 1.2 → scores a −1.2, b −0.2, c −1.0, d −1.9. The answer a is beaten by b
    #   and c (raw 3); b is known ((b,r,c) in train): filtered 2.
    # (c, r, ?): query 3.2 → d scores −0.1, the best: rank 1. (?, r, d): query 2.1 → c scores −0.1: rank 1.
    metrics = evaluate(model, graph, "test")
    assert metrics["tail_mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["head_mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["mrr"] == pytest.approx(0.75) and metrics["mr"] == pytest.approx(1.5)
    assert (metrics["hits@1"], metrics["hits@3"], metrics["hits@10"], metrics["count"]) == (0.5, 1.0, 1.0, 4)
    # without the train triples in the filter, the raw ranks 3, 1, 3, 1 come back
    raw = evaluate(model, graph, "test", index=AnswerIndex(graph.splits["test"], 4, 1))
    assert raw["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 3 + 1) / 4)


def test_answer_index_mask_and_ties():
    graph, _ = hand_graph()
    index = AnswerIndex(graph.all_triples(), 4, 1)
    # tails of (a, r) are {b, c}; of (d, r) none; heads of (r, c) are {a, b}
    assert index.mask(torch.tensor([0, 3]), torch.tensor([0, 0]), "tail").tolist() == [
        [False, True, True, False],
        [False, False, False, False],
    ]
    assert index.mask(torch.tensor([2]), torch.tensor([0]), "head").tolist() == [[True, True, False, False]]
    # all scores equal: the rank is the mean of the best and the worst place, (N + 1) / 2
    ranks = filtered_ranks(torch.zeros(2, 5), torch.tensor([0, 4]), torch.zeros(2, 5, dtype=torch.bool))
    assert ranks.tolist() == [3.0, 3.0]
    # filtering 1 and 2 leaves target 0 tied with 3 and 4: rank 1 + 2/2; a target marked known (2) stays
    # and ties with 0, 3, 4: rank 1 + 3/2
    known = torch.tensor([[False, True, True, False, False]] * 2)
    assert filtered_ranks(torch.zeros(2, 5), torch.tensor([0, 2]), known).tolist() == [2.0, 2.5]


# -- training -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["transe", "rotate", "complex"])
def test_tiny_training_learns_the_toy_graph(model):
    result = train(toy_graph(), EmbedConfig(model=model, **TOY))
    test = result.summary["test"]
    assert test["count"] == 2 * 5
    assert test["mrr"] > 0.6, test  # random: ≈ 0.18
    assert result.summary["best_step"] in (50, 100, 150) and result.summary["valid_mrr"] > 0.5


def test_reciprocal_complex_with_n3_learns_and_round_trips(tmp_path):
    """1-N ComplEx with N3 and reciprocal relations (the Lacroix et al. setting) learns the toy graph; the
    run stores 2R relation rows and loads back with them."""
    data = write_graph(tmp_path / "toy", toy_graph())
    graph = load_kg(data)
    config = EmbedConfig(model="complex", reciprocal=True, regularization=0.01, **TOY)
    result = train(graph, config, tmp_path / "run")
    assert result.summary["test"]["mrr"] > 0.6, result.summary["test"]
    assert load_file(tmp_path / "run" / "embeddings.safetensors")["relation"].shape == (4, 16)
    loaded = KGEmbedding.load(tmp_path / "run")
    assert loaded.config.reciprocal and loaded.model.reciprocal
    assert loaded.evaluate(data)["mrr"] == pytest.approx(result.summary["test"]["mrr"])
    # a run trained without reciprocals does not load as one with them: the relation table is half the size
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "reciprocal": False}))
    with pytest.raises(CheckpointError, match="does not fit complex"):
        KGEmbedding.load(tmp_path / "run")


def test_adagrad_trains_and_is_the_optimizer_used():
    """optimizer=adagrad (Lacroix et al.'s 1-N setting) learns the toy graph too; an unknown name fails."""
    result = train(toy_graph(), EmbedConfig(model="complex", **{**TOY, "optimizer": "adagrad", "lr": 0.5}))
    assert result.summary["test"]["mrr"] > 0.6, result.summary["test"]
    with pytest.raises(ConfigError, match="optimizer"):
        EmbedConfig.from_dict({"optimizer": "sgd"})


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="p_norm"):
        EmbedConfig(p_norm=3)
    with pytest.raises(ConfigError, match="negatives: must be at least 1"):
        EmbedConfig(negatives=0)
    with pytest.raises(ConfigError, match="unknown key 'negative'.*did you mean 'negatives'"):
        EmbedConfig.from_dict({"negative": 4})
    with pytest.raises(ConfigError, match="model"):
        EmbedConfig.from_dict({"model": "transh"})


def test_run_directory_round_trip(tmp_path):
    graph = toy_graph()
    result = train(graph, EmbedConfig(model="rotate", **{**TOY, "steps": 50}), tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "embeddings.safetensors",
        "metrics.jsonl",
        "summary.json",
        "vocab.json",
    ]
    assert set(load_file(run / "embeddings.safetensors")) == {"entity", "relation"}
    assert json.loads((run / "summary.json").read_text())["test"] == result.summary["test"]
    loaded = KGEmbedding.load(run)
    assert loaded.entities == graph.entities and loaded.config == result.config
    with torch.no_grad():
        direct = float(result.model.score(torch.tensor([3]), torch.tensor([0]), torch.tensor([4]))[0])
    assert loaded.score("e3", "next", "e4") == pytest.approx(direct, abs=1e-6)
    top = loaded.predict("next", head="e3", k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert loaded.predict("prev", tail="e3", k=1)[0][0] == "e4"  # (e4, prev, e3) is a train triple
    with pytest.raises(ConfigError, match="entity: 'e99' is not in the run's vocabulary"):
        loaded.predict("next", head="e99")
    with pytest.raises(ConfigError, match="exactly one"):
        loaded.predict("next", head="e1", tail="e2")
    (run / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()), "dim": 9}))
    with pytest.raises(CheckpointError, match="does not fit rotate"):
        KGEmbedding.load(run)
    with pytest.raises(CheckpointError, match="no embeddings.safetensors"):
        KGEmbedding.load(tmp_path)


def test_embed_commands(tmp_path):
    data = write_graph(tmp_path / "toy", toy_graph())
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        embed_cmd,
        [
            "train",
            "--data",
            str(data),
            "--model",
            "transe",
            "--out",
            str(out),
            "--dim",
            "8",
            "--gamma",
            "2",
            "--negatives",
            "8",
            "--batch-size",
            "16",
            "--steps",
            "150",
            "--lr",
            "0.05",
            "--eval-every",
            "50",
            "--reciprocal",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 150 and summary["test"]["mrr"] > 0.6
    assert json.loads((out / "config.json").read_text())["reciprocal"] is True
    result = runner.invoke(embed_cmd, ["eval", str(out), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mrr"] == pytest.approx(summary["test"]["mrr"])
    result = runner.invoke(embed_cmd, ["predict", str(out), "-r", "prev", "--tail", "e3", "-k", "2"])
    assert result.exit_code == 0 and result.stdout.splitlines()[0].startswith("e4\t")
    result = runner.invoke(embed_cmd, ["train", "--data", str(data), "--out", str(out), "--p-norm", "3"])
    assert isinstance(result.exception, ConfigError) and "p_norm" in str(result.exception)
