"""Sentence-level stance model: calibrated P(negative, neutral, positive) toward a marked mention (ONNX)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from workers.analysis.stance import LABELS, LabelPrior, TargetedSentence

MODEL_DIR = Path(__file__).resolve().parent / "models" / "stance"
# Rows are sorted by length and cut into batches of at most BATCH_TOKENS padded tokens (and BATCH_ROWS
# rows). Measured on one core with NewsMTSC sentences: small batches (2-8 rows) beat large ones, since
# large int8 activations fall out of cache and one long sentence pads the whole batch.
BATCH_TOKENS = 256
BATCH_ROWS = 8


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """How a targeted sentence becomes token ids; training and inference share it through meta.json."""

    max_length: int
    open_id: int
    close_id: int
    cls_id: int
    sep_id: int
    pad_id: int


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids with the target marked, and the span [target_start, target_end) of marker-to-marker ids."""

    ids: list[int]
    target_start: int
    target_end: int


def load_tokenizer(path: Path) -> Tokenizer:
    """The WordPiece tokenizer, without the truncation and padding a saved tokenizer.json may carry."""
    tokenizer = Tokenizer.from_file(str(path))
    # Truncation must happen around the target (below), not at the end of the sentence.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def mark(encoding: Encoding, start: int, end: int, spec: EncoderSpec) -> Encoded:
    """Insert the open/close markers around the tokens of text[start:end] and fit it into max_length.

    `encoding` is the sentence tokenized without special tokens; its offsets are code points into the
    sentence, so the mention's tokens are the ones whose offsets overlap the span.
    """
    ids = list(encoding.ids)
    offsets = encoding.offsets
    inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    if inside:
        first, last = inside[0], inside[-1] + 1
    else:
        # An empty or whitespace-only span: put the (empty) marked pair where the span would be.
        first = last = next((i for i, (s, _) in enumerate(offsets) if s >= start), len(ids))
    body = [*ids[:first], spec.open_id, *ids[first:last], spec.close_id, *ids[last:]]
    t_start, t_end = first, last + 2
    budget = spec.max_length - 2  # [CLS] and [SEP]
    if len(body) > budget:
        if t_end - t_start > budget:
            # A mention longer than the whole window keeps its start and the closing marker.
            body = [*body[t_start : t_start + budget - 1], spec.close_id]
            t_start, t_end = 0, budget
        else:
            # Keep the context on both sides of the target, as evenly as the sentence allows: the words
            # that carry sentiment toward a mention are usually near it.
            spare = budget - (t_end - t_start)
            right_avail = len(body) - t_end
            left = min(t_start, spare // 2)
            right = min(right_avail, spare - left)
            left = min(t_start, spare - right)
            body = body[t_start - left : t_end + right]
            t_start, t_end = left, left + (t_end - t_start)
    return Encoded(ids=[spec.cls_id, *body, spec.sep_id], target_start=t_start + 1, target_end=t_end + 1)


def encode(tokenizer: Tokenizer, items: Sequence[TargetedSentence], spec: EncoderSpec) -> list[Encoded]:
    """Tokenize and mark each item."""
    # One sentence at a time: encode_batch would start the tokenizers thread pool, which takes other
    # cores than the one the worker is given and warns in forked worker processes; a sentence costs
    # tens of microseconds either way.
    return [
        mark(tokenizer.encode(item.text, add_special_tokens=False), item.start, item.end, spec)
        for item in items
    ]


def collate(rows: Sequence[Encoded], pad_id: int) -> dict[str, npt.NDArray[Any]]:
    """Pad one batch to its longest row: input_ids, attention_mask (int64) and target_mask (float32)."""
    width = max(len(r.ids) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    target = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        input_ids[i, : len(row.ids)] = row.ids
        attention[i, : len(row.ids)] = 1
        target[i, row.target_start : row.target_end] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention, "target_mask": target}


def softmax(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Row-wise softmax in float64, so that rows sum to 1 within rounding."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The model's meta.json: label order, encoder settings, temperature, provenance."""
    meta: dict[str, Any] = json.loads((model_dir / "meta.json").read_text(encoding="utf-8"))
    if tuple(meta["labels"]) != LABELS:
        raise ValueError(f"unexpected label order in {model_dir / 'meta.json'}: {meta['labels']}")
    return meta


def spec_from_meta(meta: dict[str, Any]) -> EncoderSpec:
    """The encoder settings stored in meta.json."""
    enc = meta["encoder"]
    return EncoderSpec(
        max_length=int(enc["max_length"]),
        open_id=int(enc["open_id"]),
        close_id=int(enc["close_id"]),
        cls_id=int(enc["cls_id"]),
        sep_id=int(enc["sep_id"]),
        pad_id=int(enc["pad_id"]),
    )


def news_prior_from_meta(meta: dict[str, Any]) -> LabelPrior | None:
    """The training and real-news label priors in meta.json (training/stance/news_prior.py), if any."""
    record = meta.get("news_prior")
    if record is None:
        return None
    train, news = (tuple(float(p) for p in record[key]) for key in ("train_prior", "prior"))
    return LabelPrior(train=(train[0], train[1], train[2]), news=(news[0], news[1], news[2]))


class OnnxStanceModel:
    """The fine-tuned MiniLM stance classifier (int8 ONNX), temperature-scaled, on the CPU."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        model_dir = MODEL_DIR if model_dir is None else model_dir
        meta = read_meta(model_dir)
        self.meta = meta
        self.version: str = str(meta["version"])
        self.spec = spec_from_meta(meta)
        self.temperature = float(meta["temperature"])
        self.news_prior = news_prior_from_meta(meta)
        self.tokenizer = load_tokenizer(model_dir / "tokenizer.json")
        options = ort.SessionOptions()
        # One worker core per article by default: the workers run several processes side by side, and
        # intra-op threads beyond the cores given only add contention.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_dir / meta.get("model_file", "model.onnx")),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    @classmethod
    def default(cls) -> OnnxStanceModel:
        """The shipped model, loaded once per process."""
        return _default_model()

    def logits(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float32]:
        """Uncalibrated logits, shape (n, 3), in the order of `items`."""
        out = np.zeros((len(items), len(LABELS)), dtype=np.float32)
        if not items:
            return out
        rows = encode(self.tokenizer, items, self.spec)
        # Ties are broken by content, so the batches (and so the int8 activation scales, which are per
        # batch) depend on which sentences are asked about, not on the order they come in.
        order = sorted(
            range(len(rows)), key=lambda i: (len(rows[i].ids), items[i].text, items[i].start, items[i].end)
        )
        for chunk in _batches(order, [len(r.ids) for r in rows]):
            feeds = collate([rows[i] for i in chunk], self.spec.pad_id)
            (batch_logits,) = self.session.run(["logits"], feeds)
            out[chunk] = batch_logits
        return out

    def predict(self, items: Sequence[TargetedSentence]) -> npt.NDArray[np.float64]:
        """Calibrated P(negative), P(neutral), P(positive) per item; shape (n, 3)."""
        if not items:
            return np.zeros((0, len(LABELS)), dtype=np.float64)
        return softmax(self.logits(items) / self.temperature)


def _batches(order: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) whose padded size stays within the budgets."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the row being added is the widest of the batch.
        if current and ((len(current) + 1) * lengths[i] > BATCH_TOKENS or len(current) >= BATCH_ROWS):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


@cache
def _default_model() -> OnnxStanceModel:
    return OnnxStanceModel()
