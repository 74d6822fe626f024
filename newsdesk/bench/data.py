"""The articles the benchmark runs on: the shared news corpus when present, otherwise the repository's seeds
topped up with synthetic text. Also the synthetic seeds that grow a corpus past its real size."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import blingfire

from newsdesk.evaluation.duplicates import Article, load_corpus

ROOT = Path(__file__).resolve().parents[2]
REPO_SEEDS = ROOT / "seeds"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
FOUR_KB = 4096


@dataclass(frozen=True)
class BenchData:
    source: str  # what the articles are, for the report
    articles: list[Article]  # real-size articles (corpus order)
    synthetic: bool  # True when the text is the seeds plus made-up articles

    def texts(self, count: int, offset: int = 0) -> list[str]:
        """`count` article texts from `offset` on, cycling through the articles."""
        return [self.articles[(offset + i) % len(self.articles)].text for i in range(count)]

    def four_kb(self, count: int) -> list[str]:
        """`count` articles of about 4 KB (UTF-8): natural ones of 3.8-4.4 KB, then joined paragraphs."""
        natural = [a.text for a in self.articles if 3_800 <= len(a.text.encode()) <= 4_400]
        made = natural[:count]
        paragraphs = [p for a in self.articles for p in a.paragraphs]
        start = 0
        while len(made) < count:
            parts: list[str] = []
            while len("\n\n".join(parts).encode()) < FOUR_KB:
                parts.append(paragraphs[start % len(paragraphs)])
                start += 1
            made.append("\n\n".join(parts))
        return made


def load_bench_data(data_dir: Path, minimum: int = 200) -> BenchData:
    """The corpus under data_dir/news_corpus when present; else the repo seeds plus synthetic articles."""
    corpus = data_dir / "news_corpus"
    if (corpus / "news_corpus.jsonl").exists():
        articles = load_corpus(corpus)
        return BenchData(f"{corpus / 'news_corpus.jsonl'} ({len(articles)} articles)", articles, False)
    seeds = [
        Article(path.stem, "", path.read_text(encoding="utf-8"), "seeds", "", frozenset())
        for path in sorted(REPO_SEEDS.glob("*.txt"))
    ]
    made = [
        Article(f"synthetic-{i}", "", text, "synthetic", "", frozenset())
        for i, text in enumerate(synthetic_articles([a.text for a in seeds], max(0, minimum - len(seeds))))
    ]
    return BenchData(
        f"no corpus at {corpus}: the {len(seeds)} articles of seeds/ and {len(made)} synthetic ones",
        seeds + made,
        True,
    )


def synthetic_articles(texts: Sequence[str], count: int, seed: int = 7) -> list[str]:
    """`count` made-up articles from a word-bigram chain over `texts`: realistic word and phrase frequencies
    (stock phrases recur, as in real news) without copying whole sentences, and article lengths drawn
    from the real ones. Used to grow a seed corpus past the real articles at hand."""
    rng = random.Random(seed)  # noqa: S311 - reproducible text, not secrets
    following: dict[str, list[str]] = defaultdict(list)
    starts: list[str] = []
    for text in texts[:4000]:
        for sentence in blingfire.text_to_sentences(text.replace("\n\n", " ")).split("\n"):
            words = sentence.split()
            if len(words) < 4:
                continue
            starts.append(words[0])
            for current, nxt in itertools.pairwise(words):
                following[current].append(nxt)
            following[words[-1]].append("")
    lengths = [len(text.split()) for text in texts]
    made = []
    for _ in range(count):
        target = rng.choice(lengths)
        paragraphs: list[str] = []
        written = 0
        while written < target:
            words = [rng.choice(starts)]
            while len(words) < 40:
                word = rng.choice(following.get(words[-1]) or [""])
                if not word:
                    break
                words.append(word)
            paragraphs.append(" ".join(words))
            written += len(words)
        made.append("\n\n".join(paragraphs))
    return made
