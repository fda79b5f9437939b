"""Deterministic synthetic data for the growth benchmark in `rag bench`: articles and vectors of any size.

`write_corpus` writes plain-text articles whose chunks, as ingest/chunking.py cuts them, number exactly the size
asked for; a seeded RNG picks every word, so a size and a seed always give the same files. The articles only have
the shape the pipeline sees in news (a title line, paragraphs of three to five sentences on one topic, numbers,
names); they are not meant to read well. `clustered_vectors` makes unit vectors spread the way MiniLM's embeddings
of such a corpus are (topic clusters, a shared direction, noise), for sizes too large to embed on a laptop CPU.
Nothing here touches a store or a model.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ingest.chunking import chunk_document
from ingest.loaders import load_document

_NOUNS = ("market shares investors regulators company chip model server network data leak report analyst "
          "budget contract factory supplier customer price revenue profit loss index bond currency bank "
          "election minister court ruling policy agency study patient vaccine hospital drought harvest "
          "port shipment engine battery grid storm flood league coach season stadium ticket album tour").split()
_VERBS = ("rose fell climbed dropped slid jumped warned said announced confirmed denied expected delayed "
          "approved rejected reported launched cut raised doubled halved reached missed").split()
_ADJS = ("new unreleased quarterly annual regional national global early late surprising sharp modest "
         "steady record weak strong private public internal secret major minor").split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_SYLLABLES = "ka lo mi ra ven tor sa el dun bri qua zo fen har lin mor pe tal vi ros".split()


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


class _Topic:
    """A handful of names and words that the articles of one topic share (what makes clusters)."""

    def __init__(self, rng: random.Random) -> None:
        self.orgs = [_name(rng, 3) + rng.choice([" Corp", " Group", " Labs", " Bank", " Agency"]) for _ in range(4)]
        self.people = [f"{_name(rng)} {_name(rng, 3)}" for _ in range(4)]
        self.places = [_name(rng, 3) for _ in range(3)]
        self.nouns = rng.sample(_NOUNS, 8)


def _sentence(rng: random.Random, t: _Topic) -> str:
    org, person, place = rng.choice(t.orgs), rng.choice(t.people), rng.choice(t.places)
    noun, other = rng.sample(t.nouns, 2)
    adj, verb, day = rng.choice(_ADJS), rng.choice(_VERBS), rng.choice(_DAYS)
    pct = f"{rng.randint(1, 40)}.{rng.randint(0, 9)}%"
    forms = (
        f"The {adj} {noun} at {org} {verb} {pct} on {day}, according to {person}.",
        f"{person} said the {noun} in {place} {verb} after the {adj} {other} report.",
        f"Analysts in {place} expected the {noun} to be {adj} before {org} {verb} its {other} plans.",
        f"{org} {verb} {rng.randint(2, 900):,} {noun} units this {rng.choice(['week', 'month', 'year'])}, "
        f"a {adj} change for {place}.",
        f"On {day}, {person} of {org} {verb} that the {other} would stay {adj} for now.",
    )
    return rng.choice(forms)


def article(rng: random.Random, topic: _Topic, paragraphs: int) -> str:
    title = f"{rng.choice(topic.orgs)} {rng.choice(_VERBS)} {rng.choice(topic.nouns)} in {rng.choice(topic.places)}"
    body = [" ".join(_sentence(rng, topic) for _ in range(rng.randint(3, 5))) for _ in range(paragraphs)]
    return title + "\n\n" + "\n\n".join(body) + "\n"


def write_corpus(folder: Path, n_chunks: int, seed: int = 0, topics: int = 50) -> int:
    """Write articles into `folder` whose chunks number exactly `n_chunks`; returns the number of articles."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pool = [_Topic(rng) for _ in range(topics)]
    total = n = 0
    while total < n_chunks:
        want = min(rng.randint(6, 14), n_chunks - total)
        path = folder / f"syn_{n:06d}.txt"
        while True:  # a short paragraph can merge with the next one: then fewer chunks than paragraphs
            path.write_text(article(rng, pool[n % topics], want), encoding="utf-8")
            got = len(chunk_document(load_document(path)))
            if total + got <= n_chunks:
                break
            want -= 1
        total += got
        n += 1
    return n


def clustered_vectors(n: int, dim: int = 384, seed: int = 0, queries: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit float32 vectors laid out like MiniLM sentence embeddings, and `queries` query vectors beside them.

    Uniform random vectors would make approximate search look worse than it is on text, and copies of stored
    vectors as queries would make it look better. Here: 200 topic clusters in a 128-dimensional subspace with a
    decaying spectrum, isotropic noise, and a direction every vector shares; queries are fresh draws from the same
    topics with 1.5x the spread. At 1,000 vectors this matches all-MiniLM-L6-v2 on the synthetic corpus of
    `write_corpus` (measured: pair cosine mean 0.23, sd 0.12; a question's best match 0.55, tenth 0.44; 90 principal
    components hold 90% of the variance) with 0.23, 0.10; 0.58, 0.46; 96. The same arguments give the same vectors.
    """
    rng = np.random.default_rng(seed)
    latent, clusters, spread, noise, common, query_spread = 128, 200, 1.0, 0.3, 0.55, 1.5
    basis = np.linalg.qr(rng.standard_normal((dim, latent)))[0].T  # latent x dim, orthonormal rows
    scale = np.arange(1, latent + 1) ** -0.3
    scale /= np.sqrt((scale**2).sum())
    shared = rng.standard_normal(dim)
    shared /= np.linalg.norm(shared)
    centers = rng.standard_normal((clusters, latent)) * scale

    def draw(m: int, wider: float) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for i in range(0, m, 20_000):  # in blocks: 100k x 384 never needs more than a block in float64
            k = min(20_000, m - i)
            z = centers[rng.integers(0, clusters, k)] + spread * wider * rng.standard_normal((k, latent)) * scale
            x = z @ basis + noise * wider * rng.standard_normal((k, dim)) / np.sqrt(dim)
            x = x / np.linalg.norm(x, axis=1, keepdims=True) + common * shared
            out[i : i + k] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n, 1.0), draw(queries, query_spread)
