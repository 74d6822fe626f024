"""Estimate the label prior of the product's target mentions in real news, without labels, and store it.

The stance model learnt NewsMTSC's label mix (about 38% negative, 35% neutral, 27% positive toward mostly
people). Mentions of the United States, Russia and the United Nations in real news are far more often
neutral, so the model's calibrated posteriors over-call sentiment there. Saerens, Latinne & Decaestecker
(2002, "Adjusting the outputs of a classifier to new a priori probabilities") estimate the new prior by
EM from the model's own posteriors on unlabelled data of the new kind; the posteriors are then
re-weighted by new prior / training prior.

Here the unlabelled data are the product's lead mentions in `news_corpus/news_corpus.jsonl` (at most
1,500 per source and target, so Reuters 1987 economic wires do not swamp the rest), leaving out the
incidental ones (handled by their own rule), people (Putin, Biden: the model learnt people, and the
prior is not applied to them) and every sentence of the hand-labelled evaluation sample.
The shipped prior goes half way, in log space, from the training prior to the estimate (`alpha` 0.5): the
estimate comes from an old, mostly economic corpus, and real news about these targets today carries
more sentiment. Run from the repository root (needs only the service's own dependencies):

    .venv/bin/python -m training.stance.news_prior --data ../shared/data            # print
    .venv/bin/python -m training.stance.news_prior --data ../shared/data --write    # into meta.json
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from newsdesk.evaluation.news_stance import sentence_sha1, shipped_labels
from newsdesk.evaluation.stance import read_newsmtsc
from workers.analysis.stance import TARGET_KEYS, TargetedSentence, find_mentions, lead_mention
from workers.analysis.stance_model import MODEL_DIR, OnnxStanceModel
from workers.analysis.text import prepare

PER_GROUP = 1500
SAMPLE_SEED = 0
ALPHA = 0.5


def unlabelled_mentions(corpus: Path) -> list[TargetedSentence]:
    """Lead mentions of the targets in the corpus that are not incidental and not in the labelled sample."""
    labelled = {(row["sentence_sha1"], row["target"]) for row in shipped_labels()}
    groups: dict[tuple[str, str], list[TargetedSentence]] = defaultdict(list)
    seen: set[str] = set()
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            article = json.loads(line)
            source = "bbc" if article["source"] == "bbc" else "reuters"
            for sentence in prepare(article["text"]).sentences:
                if sentence.text in seen:
                    continue  # re-issued wires repeat sentences
                seen.add(sentence.text)
                digest = sentence_sha1(sentence.text)
                mentions = find_mentions(sentence.text)
                for key in TARGET_KEYS:
                    own = [m for m in mentions if m.target == key]
                    if not own or (digest, key) in labelled:
                        continue
                    lead = lead_mention(own)
                    if lead.incidental is None and lead.kind != "person":
                        groups[(source, key)].append(TargetedSentence(sentence.text, lead.start, lead.end))
    rng = random.Random(SAMPLE_SEED)  # noqa: S311 - a reproducible sample, not a secret
    sample: list[TargetedSentence] = []
    for group in sorted(groups):
        items = groups[group]
        sample += rng.sample(items, min(PER_GROUP, len(items)))
    return sample


def em_prior(
    posteriors: npt.NDArray[np.float64], train_prior: npt.NDArray[np.float64], iterations: int = 500
) -> npt.NDArray[np.float64]:
    """The label prior of the data behind `posteriors` (Saerens et al. 2002), from the training one."""
    prior = train_prior.copy()
    for _ in range(iterations):
        adjusted = posteriors * (prior / train_prior)
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        prior = adjusted.mean(axis=0)
    return prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--write", action="store_true", help="store the prior in the model's meta.json")
    args = parser.parse_args()

    _, train_labels, _ = read_newsmtsc(args.data / "newsmtsc" / "train.jsonl")
    train_prior = np.bincount(train_labels, minlength=3) / len(train_labels)
    items = unlabelled_mentions(args.data / "news_corpus" / "news_corpus.jsonl")
    model = OnnxStanceModel(args.model_dir)
    estimated = em_prior(model.predict(items), train_prior)
    shipped = train_prior ** (1 - ALPHA) * estimated**ALPHA
    shipped /= shipped.sum()
    record: dict[str, Any] = {
        "train_prior": [round(float(p), 4) for p in train_prior],
        "estimated_prior": [round(float(p), 4) for p in estimated],
        "alpha": ALPHA,
        "prior": [round(float(p), 4) for p in shipped],
        "mentions": len(items),
        "how": "python -m training.stance.news_prior --data ../shared/data --write",
    }
    print(json.dumps(record, indent=1))
    if args.write:
        path = args.model_dir / "meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta["news_prior"] = record
        path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        print(f"written to {path}")


if __name__ == "__main__":
    main()
