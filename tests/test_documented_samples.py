"""Issue #25: the two sample sizes the metrics docs state, read from the docs and checked at their value.

``quadratic.AGREEMENT_SAMPLE`` (the queries of the approximate engines' agreement, docs/metrics-retrieval.md)
and ``clustering.KMEANS_FIT_SAMPLES`` (the points KMeans fits its centroids on, docs/metrics-retrieval.md and
docs/metrics.md) were in no doc, so a mutant of either passed every test. Each test reads the documented number
and records what the code does one item past it (as tests/test_bounds_sweep.py does for the hubs list).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.metrics import compute_all
from gapdiag.vectors import EmbeddingSet

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented(doc: str, pattern: str) -> int:
    """The number ``docs/<doc>`` gives in ``pattern`` (one group), read as one line of prose."""
    text = re.sub(r"\s+", " ", (DOCS / doc).read_text(encoding="utf-8"))
    found = re.search(pattern, text)
    assert found, f"docs/{doc} no longer says {pattern!r}"
    return int(found.group(1).replace(",", ""))


def test_the_approximate_engines_agreement_is_measured_on_the_documented_number_of_queries(monkeypatch):
    """docs/metrics-retrieval.md: the agreement in ``extras["retrieval_agreement"]`` is measured on a seeded
    sample of 1,000 queries. With one more query than that in each direction, exactly that many are drawn."""
    from gapdiag.metrics import retrieval

    bound = _documented("metrics-retrieval.md", r"measured on a seeded sample of ([\d,]+) queries")
    drawn = []
    real = retrieval.sorted_choice

    def recording_choice(rng, n, size):
        picked = real(rng, n, size)
        drawn.append((n, len(picked)))
        return picked

    monkeypatch.setattr(retrieval, "sorted_choice", recording_choice)
    n = bound + 1
    rng = np.random.default_rng(0)
    img = rng.normal(size=(n, 8)).astype(np.float32)
    txt = (img + 0.3 * rng.normal(size=(n, 8))).astype(np.float32)
    es = EmbeddingSet({"image": img, "text": txt}, {"image": np.arange(n), "text": np.arange(n)}, n)
    _, extras = compute_all(es, ["recall_at_10"], retrieval_engine="hnsw", device="cpu")
    assert set(extras["retrieval_agreement"]) == {"image_to_text", "text_to_image"}
    assert drawn == [(n, bound), (n, bound)]


@pytest.mark.parametrize("measure", ["v_measure_modality", "v_measure_class"])
def test_kmeans_fits_its_centroids_on_the_documented_number_of_points_and_labels_every_point(monkeypatch, measure):
    """docs/metrics-retrieval.md (and docs/metrics.md): above 20,000 joint points the centroids are fitted on a
    seeded sample of 20,000 and every point is labelled; at 20,000 points KMeans fits them all."""
    from sklearn import cluster

    from gapdiag.metrics import clustering

    bound = _documented("metrics-retrieval.md", r"Above ([\d,]+) joint points KMeans fits its centroids")
    assert _documented("metrics.md", r"Above ([\d,]+) points the centroids are fitted on a seeded sample") == bound
    fitted, labelled = [], []

    class RecordingKMeans(cluster.KMeans):
        def fit(self, x, *args, **kwargs):
            fitted.append(len(x))
            return super().fit(x, *args, **kwargs)

        def predict(self, x, *args, **kwargs):
            labelled.append(len(x))
            return super().predict(x, *args, **kwargs)

    monkeypatch.setattr(cluster, "KMeans", RecordingKMeans)
    rng = np.random.default_rng(1)
    for n in (bound, bound + 1):
        halves = [rng.normal(size=(n // 2, 2)) + 3, rng.normal(size=(n - n // 2, 2)) - 3]
        if measure == "v_measure_modality":
            value = getattr(clustering, measure)(halves, n_init=1)
        else:
            value = getattr(clustering, measure)(halves, [np.arange(len(h)) % 2 for h in halves], n_init=1)
        assert 0.0 <= value <= 1.0
    # At the bound fit_predict fits the whole set (through fit) and labels nothing apart; above it, KMeans fits
    # the sample, then labels every point.
    assert fitted == [bound, bound]
    assert labelled == [bound + 1]
