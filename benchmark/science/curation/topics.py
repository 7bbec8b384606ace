"""Value topics of a pool: its candidates' MiniLM embeddings clustered by k-means into K topics, each named
by its most distinctive words (TF-IDF over the topics' texts, one document per topic, so a word common to
every topic ranks low).  Deterministic per seed.  The topic of each candidate, one-hot, is the `values`
dimension of the selection objective (`topic_features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORDS_PER_TOPIC = 8
WORDS_IN_NAME = 3


@dataclass
class Topic:
    number: int
    words: list[str]
    size: int

    @property
    def name(self) -> str:
        return " · ".join(self.words[:WORDS_IN_NAME]) or f"topic {self.number}"


def topics_cluster(
    embeddings: np.ndarray, texts: list[str], k: int, *, seed: int = 0
) -> tuple[np.ndarray, list[Topic]]:
    """(topic number per row, the K topics); topics are numbered by size, largest first (ties by first row)."""
    from sklearn.cluster import KMeans  # noqa: PLC0415  (scikit-learn takes a second to import)
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    embeddings = np.asarray(embeddings, dtype=np.float64)
    n = len(embeddings)
    if len(texts) != n:
        raise ValueError(f"{len(texts)} texts for {n} embeddings")
    if not 1 <= k <= n:
        raise ValueError(f"K = {k} topics needs 1 ≤ K ≤ {n} (the candidates)")
    raw = KMeans(n_clusters=k, random_state=seed, n_init=4).fit_predict(embeddings)
    # Renumber: largest topic first, so that the numbers do not depend on k-means' arbitrary label order.
    sizes = np.bincount(raw, minlength=k)
    first = np.array([np.flatnonzero(raw == c)[0] if sizes[c] else n for c in range(k)])
    order = sorted(range(k), key=lambda c: (-sizes[c], first[c]))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    labels = remap[raw]
    documents = [" ".join(texts[i] for i in np.flatnonzero(labels == t)) for t in range(k)]
    words: list[list[str]] = [[] for _ in range(k)]
    try:
        vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b", sublinear_tf=True)
        matrix = vectorizer.fit_transform(documents).toarray()
        vocabulary = vectorizer.get_feature_names_out()
        for t in range(k):
            ranked = np.lexsort((vocabulary, -matrix[t]))  # by score, ties alphabetically (deterministic)
            words[t] = [str(vocabulary[j]) for j in ranked[:WORDS_PER_TOPIC] if matrix[t, j] > 0]
    except ValueError:  # no word at all (texts of digits or stop words only): topics stay unnamed
        pass
    topics = [Topic(t, words[t], int(np.sum(labels == t))) for t in range(k)]
    return labels, topics


def topic_features(labels: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The one-hot `value_topic_<number>` columns of the candidates' topics."""
    labels = np.asarray(labels)
    return {f"value_topic_{t}": (labels == t).astype(np.float64) for t in range(k)}
