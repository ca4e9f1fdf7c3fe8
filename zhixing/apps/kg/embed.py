"""Knowledge representation learning: TransE, RotatE and ComplEx link prediction on FB15k-237 / WN18RR.

Each model embeds entities and relations and scores a triple (h, r, t) (higher = more plausible):

    TransE  (Bordes et al. 2013)  f(h, r, t) = γ − ‖h + r − t‖_p                    h, r, t ∈ ℝ^d, p = 1 or 2
    RotatE  (Sun et al. 2019)     f(h, r, t) = γ − Σ_k |h_k · r_k − t_k|            h, t ∈ ℂ^d, r_k = e^{iθ_k}
    ComplEx (Trouillon et al. 2016) f(h, r, t) = Re(Σ_k h_k · r_k · conj(t_k))     h, r, t ∈ ℂ^d

Every score is written as `match(query(anchor, r), candidate)`, with the query computed once per
(anchor, relation) and matched against one candidate, a few negatives, or every entity:

    tail prediction (h, r, ?)   TransE q = h + r    RotatE q = h∘r     ComplEx q = h∘r
    head prediction (?, r, t)   TransE q = t − r    RotatE q = t∘r̄     ComplEx q = r̄∘t

(h + r − t = h − (t − r); |h∘r − t| = |h − t∘r̄| since |r_k| = 1; Re(h r t̄) = Re(h · conj(r̄ t))), so
training on corrupted heads and tails and ranking against all entities use the same code.
With `reciprocal=True` each relation r also gets an inverse r⁻¹ with its own embedding, and head
prediction (?, r, t) is asked as tail prediction (t, r⁻¹, ?) (Lacroix et al. 2018; Dettmers et al. 2018):
the two directions no longer have to share one set of relation parameters.

Training follows the RotatE paper for the distance models: for each positive triple, `negatives`
corrupted ones (head or tail replaced by a uniformly drawn entity, alternating by step), loss

    L = −log σ(f(h, r, t)) − Σ_i p_i · log σ(−f(h'_i, r, t'_i)),   p = softmax(α · f(negatives)) (no grad)

(self-adversarial weighting with temperature α; α = 0 gives the uniform mean), Adam (or Adagrad,
`optimizer=adagrad`, the optimizer of Lacroix et al.'s 1-N runs). ComplEx is trained
1-N: the query against all entities, cross-entropy to the true one, plus an N3 penalty (Lacroix et al.
2018). Evaluation is filtered ranking over both directions (kge_data.filtered_ranks); validation picks
the best step and can stop early. A run is a directory of safetensors + JSON (no pickle):
`embeddings.safetensors`, `config.json`, `vocab.json`, `metrics.jsonl`, `summary.json`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from zhixing.apps.kg.kge_data import AnswerIndex, KGData, filtered_ranks, load_kg, ranking_metrics
from zhixing.config import Config
from zhixing.errors import CheckpointError, ConfigError
from zhixing.io import atomic_write_json, read_json_object, staged_dir

Direction = Literal["head", "tail"]


@dataclass
class EmbedConfig(Config):
    """Settings of one knowledge-embedding run (flags of `zhixing app kg embed train`)."""

    model: Literal["transe", "rotate", "complex"] = "rotate"
    dim: int = 100  # embedding size: real dims (TransE) or complex dims (RotatE, ComplEx: 2·dim reals)
    p_norm: int = 1  # TransE: the norm of h + r − t (1 or 2)
    gamma: float = 6.0  # margin γ of the distance models
    alpha: float = 0.5  # self-adversarial temperature α (0 = uniform weights over the negatives)
    negatives: int = 128  # corrupted triples per positive (distance models)
    batch_size: int = 512  # positive triples per step
    lr: float = 1e-3  # learning rate
    optimizer: Literal["adam", "adagrad"] = "adam"  # Adagrad: the optimizer of Lacroix et al.'s 1-N runs
    steps: int = 2000  # optimizer steps (an upper bound when max_time is set)
    max_time: float = 0.0  # stop after this many seconds of training (0 = no limit)
    regularization: float = 0.0  # ComplEx: weight of the N3 penalty
    reciprocal: bool = False  # a separate inverse relation r⁻¹ for head prediction: (?, r, t) = (t, r⁻¹, ?)
    eval_every: int = 500  # validate every N steps (0 = only at the end)
    eval_valid: int = 1000  # valid triples used for model selection (0 = all)
    patience: int = 0  # stop after N validations without a better MRR (0 = never)
    eval_batch_size: int = 64  # queries scored against all entities at once
    test_limit: int = 0  # test triples evaluated after training (0 = all)
    seed: int = 0  # initialisation, triple order and negatives

    def __post_init__(self):
        positive = {
            "dim": self.dim,
            "negatives": self.negatives,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "eval_batch_size": self.eval_batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name}: must be at least 1, got {value}")
        if self.p_norm not in (1, 2):
            raise ConfigError(f"p_norm: TransE uses the L1 or L2 norm (1 or 2), got {self.p_norm}")
        for name in ("lr", "gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        non_negative = (
            "alpha",
            "max_time",
            "regularization",
            "eval_every",
            "eval_valid",
            "patience",
            "test_limit",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


# -- the models -------------------------------------------------------------------------------------------


class KGEModel(nn.Module):
    """Entity and relation embeddings with a score f(h, r, t) written as match(query(anchor, r), candidate).

    entity: (num_entities, width) parameter; relation: (num_relations, rel_width) parameter.
    """

    name = "kge"
    distance = True  # trained with negative sampling; False: 1-N cross-entropy (ComplEx)

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        width: int,
        rel_width: int,
        init: float,
        reciprocal: bool = False,
    ):
        super().__init__()
        self.num_relations, self.reciprocal = num_relations, reciprocal
        rows = 2 * num_relations if reciprocal else num_relations  # rows R.. 2R−1: the inverses r⁻¹
        self.entity = nn.Parameter(torch.empty(num_entities, width).uniform_(-init, init))
        self.relation = nn.Parameter(torch.empty(rows, rel_width).uniform_(-init, init))

    def route(self, relation: torch.Tensor, direction: Direction) -> tuple[torch.Tensor, Direction]:
        """The relation rows and the direction a query really uses: with reciprocal relations, head
        prediction (?, r, t) is tail prediction with the inverse, (t, r⁻¹, ?) (Lacroix et al. 2018)."""
        if self.reciprocal and direction == "head":
            return relation + self.num_relations, "tail"
        return relation, direction

    def query(self, anchor: torch.Tensor, relation: torch.Tensor, direction: Direction) -> torch.Tensor:
        """anchor: (...,) entity ids (heads for tail prediction, tails for head prediction), relation:
        (...,) ids → (..., width) queries."""
        relation, direction = self.route(relation, direction)
        return self.project(anchor, relation, direction)

    def project(self, anchor: torch.Tensor, relation: torch.Tensor, direction: Direction) -> torch.Tensor:
        """The query of `anchor` under relation rows `relation` (already routed)."""
        raise NotImplementedError

    def match(self, query: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """query, candidate: (..., width), broadcast → (...,) scores."""
        raise NotImplementedError

    def score(self, head: torch.Tensor, relation: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """f(h, r, t) for id tensors that broadcast together → scores of that shape."""
        return self.match(self.query(head, relation, "tail"), self.entity[tail])

    def score_candidates(
        self, anchor: torch.Tensor, relation: torch.Tensor, candidates: torch.Tensor, direction: Direction
    ) -> torch.Tensor:
        """anchor, relation: (batch,); candidates: (batch, k) entity ids → (batch, k) scores."""
        q = self.query(anchor, relation, direction)[:, None]  # (batch, 1, width)
        return self.match(q, self.entity[candidates])

    def score_all(
        self, anchor: torch.Tensor, relation: torch.Tensor, direction: Direction, budget: int = 1 << 25
    ) -> torch.Tensor:
        """Scores of every entity as the answer: (batch,) ids → (batch, num_entities). The distance is
        taken over chunks of entities so that one chunk's (batch, chunk, width) tensor stays under
        `budget` elements."""
        q = self.query(anchor, relation, direction)  # (batch, width)
        chunk = max(1, budget // max(1, q.shape[0] * q.shape[1]))
        return torch.cat([self.match(q[:, None], part[None]) for part in self.entity.split(chunk)], 1)


class TransE(KGEModel):
    """TransE: f(h, r, t) = γ − ‖h + r − t‖_p; relations are translations. Initialised uniformly in
    ±(γ + 2)/d as in the RotatE paper's code, no norm constraint."""

    name = "transe"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        dim: int,
        gamma: float,
        p_norm: int = 1,
        reciprocal: bool = False,
    ):
        super().__init__(num_entities, num_relations, dim, dim, (gamma + 2.0) / dim, reciprocal)
        self.gamma, self.p_norm = gamma, p_norm

    def project(self, anchor, relation, direction):
        sign = 1.0 if direction == "tail" else -1.0  # h + r for tails, t − r for heads
        return self.entity[anchor] + sign * self.relation[relation]

    def match(self, query, candidate):
        return self.gamma - torch.linalg.vector_norm(query - candidate, ord=self.p_norm, dim=-1)

    def score_all(self, anchor, relation, direction, budget: int = 1 << 25):
        # cdist computes the (batch, num_entities) distances without the (batch, E, d) difference tensor
        q = self.query(anchor, relation, direction)
        return (
            self.gamma
            - torch.cdist(
                q[None], self.entity[None], p=float(self.p_norm), compute_mode="donot_use_mm_for_euclid_dist"
            )[0]
        )


def _complex(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2d) real tensor → its real and imaginary halves, each (..., d)."""
    return x.chunk(2, dim=-1)


class RotatE(KGEModel):
    """RotatE: f(h, r, t) = γ − Σ_k |h_k r_k − t_k| with |r_k| = 1: each relation rotates every complex
    coordinate by a phase θ_k, which models symmetry, inversion and composition.

    entity: (E, 2d) = [Re | Im]; relation: (R, d) phases, stored scaled like the paper's code
    (θ = relation · π / ((γ + 2)/d)) so that Adam moves them at the speed of the entities."""

    name = "rotate"

    def __init__(
        self, num_entities: int, num_relations: int, dim: int, gamma: float, reciprocal: bool = False
    ):
        self.init = (gamma + 2.0) / dim
        super().__init__(num_entities, num_relations, 2 * dim, dim, self.init, reciprocal)
        self.gamma = gamma

    def phase(self, relation: torch.Tensor) -> torch.Tensor:
        return self.relation[relation] * (math.pi / self.init)

    def project(self, anchor, relation, direction):
        re, im = _complex(self.entity[anchor])
        theta = self.phase(relation)
        cos, sin = torch.cos(theta), torch.sin(theta)
        if direction == "head":  # t∘r̄: rotate back
            sin = -sin
        return torch.cat([re * cos - im * sin, re * sin + im * cos], -1)

    def match(self, query, candidate):
        q_re, q_im = _complex(query)
        c_re, c_im = _complex(candidate)
        # |q − c| per coordinate; the in-place adds save two temporaries of the (batch, k, d) size, and
        # the ε keeps the gradient finite where q_k = c_k
        modulus = torch.square(q_re - c_re).add_(torch.square(q_im - c_im)).add_(1e-12).sqrt()
        return self.gamma - modulus.sum(-1)

    @torch.no_grad()
    def score_all(self, anchor, relation, direction, budget: int = 1 << 22):
        # Σ_k |q_k − e_k| has a square root per coordinate, so no matrix product gives it. cdist over the
        # d coordinates as a batch of 2-D points ((d, batch, 2) vs (d, chunk, 2)) is one fused kernel, ~3×
        # faster on CPU than the elementwise expression; chunks keep (d, batch, chunk) under `budget`.
        q = torch.stack(_complex(self.query(anchor, relation, direction)), -1).transpose(0, 1).contiguous()
        points = torch.stack(_complex(self.entity), -1).transpose(0, 1)  # (d, E, 2)
        chunk = max(1, budget // max(1, q.shape[0] * q.shape[1]))
        distances = [
            torch.cdist(q, part.contiguous(), compute_mode="donot_use_mm_for_euclid_dist").sum(0)
            for part in points.split(chunk, dim=1)
        ]
        return self.gamma - torch.cat(distances, 1)


class ComplEx(KGEModel):
    """ComplEx: f(h, r, t) = Re(Σ_k h_k r_k conj(t_k)) (a bilinear form; asymmetric through the conjugate).
    entity: (E, 2d), relation: (R, 2d) = [Re | Im]. Initialised small (±1e-3·√3), as for 1-N training."""

    name = "complex"
    distance = False

    def __init__(self, num_entities: int, num_relations: int, dim: int, reciprocal: bool = False):
        super().__init__(num_entities, num_relations, 2 * dim, 2 * dim, 1e-3 * math.sqrt(3), reciprocal)

    def project(self, anchor, relation, direction):
        a_re, a_im = _complex(self.entity[anchor])
        r_re, r_im = _complex(self.relation[relation])
        if direction == "head":  # q = r̄∘t
            r_im = -r_im
        return torch.cat([a_re * r_re - a_im * r_im, a_re * r_im + a_im * r_re], -1)

    def match(self, query, candidate):
        return (query * candidate).sum(-1)  # Re(q̄ c) = q_re c_re + q_im c_im

    def score_all(self, anchor, relation, direction, budget: int = 1 << 25):
        return self.query(anchor, relation, direction) @ self.entity.T  # (batch, E)


def build_model(config: EmbedConfig, num_entities: int, num_relations: int) -> KGEModel:
    reciprocal = config.reciprocal
    if config.model == "transe":
        return TransE(num_entities, num_relations, config.dim, config.gamma, config.p_norm, reciprocal)
    if config.model == "rotate":
        return RotatE(num_entities, num_relations, config.dim, config.gamma, reciprocal)
    return ComplEx(num_entities, num_relations, config.dim, reciprocal)


# -- evaluation ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: KGEModel,
    data: KGData,
    split: str = "test",
    *,
    batch_size: int = 64,
    limit: int = 0,
    index: AnswerIndex | None = None,
) -> dict[str, float]:
    """Filtered MRR, MR and Hits@1/3/10 on `split`, over head and tail prediction together (2 ranks per
    triple), plus `tail_mrr` / `head_mrr`. limit: only the first N triples (0 = all).
    index: the known answers (built from all splits when not given)."""
    if split not in data.splits:
        raise ConfigError(f"split: {split!r} is not loaded; loaded: {sorted(data.splits)}")
    triples = data.splits[split][:limit] if limit else data.splits[split]
    index = index or AnswerIndex(data.all_triples(), data.num_entities, data.num_relations)
    was_training = model.training
    model.eval()
    ranks: dict[str, list[torch.Tensor]] = {"tail": [], "head": []}
    for batch in triples.split(batch_size):
        h, r, t = batch.unbind(1)
        for direction, anchor, target in (("tail", h, t), ("head", t, h)):
            scores = model.score_all(anchor, r, direction)
            ranks[direction].append(filtered_ranks(scores, target, index.mask(anchor, r, direction)))
    model.train(was_training)
    tail, head = torch.cat(ranks["tail"]), torch.cat(ranks["head"])
    out = ranking_metrics(torch.cat([tail, head]))
    out["tail_mrr"] = float((1.0 / tail).mean())
    out["head_mrr"] = float((1.0 / head).mean())
    return out


# -- training -----------------------------------------------------------------------------------------------


def loss_on(
    model: KGEModel,
    batch: torch.Tensor,
    direction: Direction,
    config: EmbedConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The training loss of one batch of positive triples (batch, 3), corrupting `direction`."""
    h, r, t = batch.unbind(1)
    anchor, target = (h, t) if direction == "tail" else (t, h)
    if not model.distance:  # 1-N: every entity is a candidate, cross-entropy to the true one
        rows, routed = model.route(r, direction)  # the inverse r⁻¹ for head prediction with reciprocals
        q = model.project(anchor, rows, routed)
        loss = F.cross_entropy(q @ model.entity.T, target)
        if config.regularization:
            # N3 on the moduli of the complex coordinates of h, r, t (Lacroix et al. 2018, eq. 4), r being
            # the relation row the query used
            parts = [model.entity[h], model.relation[rows], model.entity[t]]
            n3 = sum((lambda z: (z[0] ** 2 + z[1] ** 2).sqrt() ** 3)(_complex(p)).sum() for p in parts)
            loss = loss + config.regularization * n3 / len(batch)
        return loss
    negatives = torch.randint(model.entity.shape[0], (len(batch), config.negatives), generator=generator)
    q = model.query(anchor, r, direction)  # (batch, width)
    positive = model.match(q, model.entity[target])  # (batch,)
    negative = model.match(q[:, None], model.entity[negatives])  # (batch, negatives)
    if config.alpha > 0:  # self-adversarial: harder negatives weigh more; the weights are not trained
        weights = torch.softmax(config.alpha * negative.detach(), dim=-1)
    else:
        weights = torch.full_like(negative, 1.0 / config.negatives)
    positive_loss = -F.logsigmoid(positive).mean()
    negative_loss = -(weights * F.logsigmoid(-negative)).sum(-1).mean()
    return (positive_loss + negative_loss) / 2


@dataclass
class TrainResult:
    model: KGEModel
    config: EmbedConfig
    history: list[dict] = field(default_factory=list)  # train and eval records
    summary: dict = field(default_factory=dict)


def train(
    data: KGData,
    config: EmbedConfig,
    out: str | Path | None = None,
    log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train `config.model` on data.splits["train"], select the step with the best filtered valid MRR,
    evaluate it on test (when loaded) and write the run to `out` (when given). `log` receives each record."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config, data.num_entities, data.num_relations)
    optimizer = (torch.optim.Adagrad if config.optimizer == "adagrad" else torch.optim.Adam)(
        model.parameters(), lr=config.lr
    )
    train_triples = data.splits["train"]
    index = AnswerIndex(data.all_triples(), data.num_entities, data.num_relations)
    history: list[dict] = []

    def record(entry: dict) -> None:
        history.append(entry)
        if log:
            log(entry)

    best = {"mrr": -1.0, "step": 0, "state": None}
    bad_evals, order, cursor = 0, torch.randperm(len(train_triples), generator=generator), 0
    train_time, eval_time, step, loss_sum, loss_n = 0.0, 0.0, 0, 0.0, 0
    stop = "steps"
    while step < config.steps:
        started = time.perf_counter()
        if cursor + config.batch_size > len(order):  # a new epoch: a new order
            order, cursor = torch.randperm(len(train_triples), generator=generator), 0
        batch = train_triples[order[cursor : cursor + config.batch_size]]
        cursor += config.batch_size
        loss = loss_on(model, batch, "tail" if step % 2 == 0 else "head", config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        train_time += time.perf_counter() - started
        out_of_time = bool(config.max_time) and train_time >= config.max_time
        if step % 50 == 0 or step == config.steps or out_of_time:
            record({"step": step, "loss": loss_sum / loss_n, "train_s": round(train_time, 2)})
            loss_sum, loss_n = 0.0, 0
        if (config.eval_every and step % config.eval_every == 0) or step == config.steps or out_of_time:
            started = time.perf_counter()
            metrics = (
                evaluate(
                    model,
                    data,
                    "valid",
                    batch_size=config.eval_batch_size,
                    limit=config.eval_valid,
                    index=index,
                )
                if "valid" in data.splits
                else None
            )
            eval_time += time.perf_counter() - started
            if metrics is None:  # no valid split: the last step is the model
                best = {"mrr": 0.0, "step": step, "state": None}
            else:
                record(
                    {
                        "step": step,
                        **{f"valid_{k}": v for k, v in metrics.items()},
                        "eval_s": round(time.perf_counter() - started, 2),
                    }
                )
                if metrics["mrr"] > best["mrr"]:
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best, bad_evals = {"mrr": metrics["mrr"], "step": step, "state": state}, 0
                else:
                    bad_evals += 1
                    if config.patience and bad_evals >= config.patience:
                        stop = "patience"
                        break
        if out_of_time:
            stop = "max_time"
            break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    summary = {
        "model": config.model,
        "data": data.root,
        "steps": step,
        "best_step": best["step"],
        "stopped_by": stop,
        "train_s": round(train_time, 2),
        "valid_eval_s": round(eval_time, 2),
        "steps_per_s": round(step / train_time, 3) if train_time else None,
        "num_entities": data.num_entities,
        "num_relations": data.num_relations,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if best["state"] is not None:
        summary["valid_mrr"] = best["mrr"]
    if "test" in data.splits:
        started = time.perf_counter()
        summary["test"] = evaluate(
            model, data, "test", batch_size=config.eval_batch_size, limit=config.test_limit, index=index
        )
        summary["test_eval_s"] = round(time.perf_counter() - started, 2)
        record({"step": step, **{f"test_{k}": v for k, v in summary["test"].items()}})
    result = TrainResult(model, config, history, summary)
    if out is not None:
        save_run(out, result, data)
    return result


# -- run directories ------------------------------------------------------------------------------------

WEIGHTS, CONFIG, VOCAB, METRICS, SUMMARY = (
    "embeddings.safetensors",
    "config.json",
    "vocab.json",
    "metrics.jsonl",
    "summary.json",
)


def save_run(out: str | Path, result: TrainResult, data: KGData) -> Path:
    """Write the run directory at once (staged, then renamed): weights as safetensors, the rest JSON."""
    out = Path(out)
    with staged_dir(out) as tmp:
        save_file({k: v.detach().contiguous() for k, v in result.model.state_dict().items()}, tmp / WEIGHTS)
        atomic_write_json(
            tmp / CONFIG,
            {
                "kind": "kg-embedding",
                **result.config.to_dict(),
                "num_entities": data.num_entities,
                "num_relations": data.num_relations,
            },
        )
        atomic_write_json(tmp / VOCAB, {"entities": data.entities, "relations": data.relations}, indent=0)
        (tmp / METRICS).write_text("".join(json.dumps(r) + "\n" for r in result.history), encoding="utf-8")
        atomic_write_json(tmp / SUMMARY, result.summary)
    return out


class KGEmbedding:
    """A trained run opened for use: the model with its vocabularies; ranks answers by name."""

    def __init__(
        self, model: KGEModel, config: EmbedConfig, entities: list[str], relations: list[str], path: str = ""
    ):
        self.model, self.config, self.path = model.eval(), config, path
        self.entities, self.relations = entities, relations
        self.entity_ids = {e: i for i, e in enumerate(entities)}
        self.relation_ids = {r: i for i, r in enumerate(relations)}

    @classmethod
    def load(cls, run: str | Path) -> KGEmbedding:
        run = Path(run)
        if not (run / WEIGHTS).is_file():
            raise CheckpointError(f"{run}: no {WEIGHTS}; expected a run of `zhixing app kg embed train`")
        raw = read_json_object(run / CONFIG)
        if raw.get("kind") != "kg-embedding":
            raise CheckpointError(f"{run / CONFIG}: not a knowledge-embedding run (kind={raw.get('kind')!r})")
        sizes = {k: raw.pop(k, None) for k in ("kind", "num_entities", "num_relations")}
        config = EmbedConfig.from_dict(raw, source=str(run / CONFIG))
        vocab = read_json_object(run / VOCAB)
        entities, relations = vocab.get("entities"), vocab.get("relations")
        if not isinstance(entities, list) or not isinstance(relations, list):
            raise CheckpointError(f"{run / VOCAB}: expected lists 'entities' and 'relations'")
        if (len(entities), len(relations)) != (sizes["num_entities"], sizes["num_relations"]):
            raise CheckpointError(
                f"{run}: {VOCAB} holds {len(entities)} entities / {len(relations)} "
                f"relations, {CONFIG} says {sizes['num_entities']} / "
                f"{sizes['num_relations']}"
            )
        model = build_model(config, len(entities), len(relations))
        state = load_file(run / WEIGHTS)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(
                f"{run / WEIGHTS}: does not fit {config.model} (dim {config.dim}): "
                f"{str(e).splitlines()[-1].strip()}"
            ) from None
        return cls(model, config, entities, relations, str(run))

    def _id(self, table: dict[str, int], name: str, what: str) -> int:
        if name not in table:
            raise ConfigError(f"{what}: {name!r} is not in the run's vocabulary ({len(table)} {what}s)")
        return table[name]

    @torch.no_grad()
    def predict(
        self, relation: str, head: str | None = None, tail: str | None = None, k: int = 10
    ) -> list[tuple[str, float]]:
        """The k best answers (name, score) of (head, relation, ?) or (?, relation, tail): give one end."""
        if (head is None) == (tail is None):
            raise ConfigError("predict: give exactly one of head= (to rank tails) or tail= (to rank heads)")
        rel = torch.tensor([self._id(self.relation_ids, relation, "relation")])
        direction: Direction = "tail" if head is not None else "head"
        anchor = torch.tensor([self._id(self.entity_ids, head if head is not None else tail, "entity")])
        scores = self.model.score_all(anchor, rel, direction)[0]
        top = scores.topk(min(k, len(scores)))
        return [(self.entities[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    @torch.no_grad()
    def score(self, head: str, relation: str, tail: str) -> float:
        ids = [
            torch.tensor([self._id(self.entity_ids, head, "entity")]),
            torch.tensor([self._id(self.relation_ids, relation, "relation")]),
            torch.tensor([self._id(self.entity_ids, tail, "entity")]),
        ]
        return float(self.model.score(*ids)[0])

    def evaluate(
        self, data_dir: str | Path, split: str = "test", batch_size: int = 64, limit: int = 0
    ) -> dict[str, float]:
        """Filtered metrics on a split of `data_dir`, whose vocabulary must be the run's."""
        data = load_kg(data_dir)
        if data.entities != self.entities or data.relations != self.relations:
            raise ConfigError(
                f"data: {data_dir} gives {data.num_entities} entities / {data.num_relations} "
                f"relations in another order than the run {self.path}; evaluate on the data "
                "it was trained on"
            )
        return evaluate(self.model, data, split, batch_size=batch_size, limit=limit)


__all__ = [
    "EmbedConfig",
    "KGEModel",
    "TransE",
    "RotatE",
    "ComplEx",
    "build_model",
    "evaluate",
    "train",
    "loss_on",
    "TrainResult",
    "save_run",
    "KGEmbedding",
]
