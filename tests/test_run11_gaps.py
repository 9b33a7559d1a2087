"""Issue #25, run 11: what the survivors of the fresh samples (seeds 38 and 39) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 11").
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import reference as ref

from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.arithmetic import arithmetic_accuracy
from gapdiag.metrics.blocked import strip_uniformity
from gapdiag.metrics.intrinsic import twonn_dimension
from gapdiag.metrics.strip_scan import MAX_TWO_T
from gapdiag.vectors import EmbeddingSet


def test_an_attribute_given_as_one_value_instead_of_one_per_image_is_a_one_line_error():
    """Attributes are one value per image: a single value (a 0-d array) is refused naming the attribute, its
    shape and the fix. Survivor: ``column.ndim != 1`` → ``> 1`` (an ``IndexError`` on the 0-d column)."""
    images = np.eye(3, dtype=np.float32)
    text = {"red": np.array([1.0, 0.0, 0.0]), "green": np.array([0.0, 1.0, 0.0])}
    with pytest.raises(InputError, match=r"attribute 'color' has shape \(\) but there are 3 images; give one value"):
        arithmetic_accuracy(images, {"color": np.array("red")}, text, device="cpu")


def test_uniformity_of_a_strip_without_same_sample_pairs_at_a_high_temperature():
    """Past the compiled exp's range (2t > 8) a strip is summed with numpy; a strip none of whose entries is a
    same-sample pair has an empty same-sample sum, −inf (its docstring), and the other sum is the reference.
    Survivor: the empty maximum ``-math.inf`` → ``~math.inf`` (a ``TypeError``)."""
    rng = np.random.default_rng(11)
    a, b = (rng.normal(size=(5, 4)) for _ in range(2))
    s = ((a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T)
    s = s.astype(np.float32)
    t = MAX_TWO_T  # 2t = 16, past the compiled range
    other, same = strip_uniformity(s.copy(), t, np.zeros(s.shape, dtype=bool))
    assert same == -math.inf
    assert other == pytest.approx(math.log(np.exp(2 * t * (s.astype(np.float64) - 1)).sum()), abs=1e-6)


def test_twonn_of_exactly_three_points_is_measured():
    """TwoNN needs 3 points (each point's two nearest others): with exactly 3 distinct points it is the
    brute-force MLE, and with 2 it is skipped with that reason. Survivor: the minimum ``< 3`` → ``< 4``."""
    x = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.28, 0.96]], dtype=np.float32)
    assert twonn_dimension(x, sample=None) == pytest.approx(ref.twonn(x), rel=1e-6)  # float32 points
    with pytest.raises(InputError, match="needs at least 3 points, got 2"):
        twonn_dimension(x[:2], sample=None)


@pytest.mark.parametrize("n", [4, 5, 6])
def test_recall_at_k_on_a_gallery_of_k_items_is_measured_and_on_fewer_skipped(n):
    """R@5 needs a gallery of at least 5 items: with 5 or 6 it is the brute-force recall (every true item is in
    the top 5 of a gallery of 5), with 4 it is skipped naming both numbers. Survivor: ``k > n_gallery`` → ``k is
    n_gallery`` (a gallery of exactly K skipped, a smaller one not)."""
    rng = np.random.default_rng(n)
    image, text = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    es = EmbeddingSet({"image": image, "text": text}, {"image": np.arange(n), "text": np.arange(n)}, n)
    values, extras = compute_all(es, device="cpu")  # every metric: the ones that cannot apply are skipped
    if n < 5:
        assert extras["skipped"]["recall_at_5/image_to_text"] == f"K=5 exceeds the gallery ({n} items)"
        assert "recall_at_5/image_to_text" not in values
        return
    assert values["recall_at_5/image_to_text"] == pytest.approx(ref.recall(image, text, np.arange(n), np.arange(n), 5))
    assert n == 6 or values["recall_at_5/image_to_text"] == 1.0


@pytest.mark.parametrize("edit, reason", [
    (lambda meta: meta.pop("modalities"), "field 'modalities' missing"),
    (lambda meta: meta.__setitem__("modalities", 5), ("a field of wrong type ('int' object is not iterable): "
                                                      "modalities must be a list")),
])
def test_a_meta_json_whose_checksum_holds_but_whose_modalities_are_wrong_is_named_by_get_and_verify(
        tmp_path, edit, reason):
    """A ``meta.json`` rewritten by a tool (its own checksum recomputed) without ``modalities``, or with a number
    there: reading the entry names the field (one line, the entry's file), and ``cache verify`` reports the
    entry's ``modalities`` and goes on. Survivor: in ``integrity.verify_entry_files`` ``except (KeyError,
    TypeError)`` → the TypeError not caught; and before, ``get`` said "field 'int' object is not iterable missing
    or malformed"."""
    from test_run10_gaps import _entry_with_meta

    from gapdiag.cache import integrity
    from gapdiag.errors import CacheError

    cache = _entry_with_meta(tmp_path, edit)
    with pytest.raises(CacheError, match="meta.json") as info:
        cache.get("e")
    assert reason in info.value.message
    (check,) = cache.verify()
    assert check["problems"] == [{"file": "meta.json", "reason": "field 'modalities' missing or malformed"}]
    meta = json.loads((cache.path("e") / "meta.json").read_text())
    assert integrity.verify_entry_files(cache.path("e"), meta, memo=False) == [
        ("meta.json", "field 'modalities' missing or malformed")]


def test_a_committed_chunk_with_too_few_rows_is_re_embedded_naming_the_rows_it_should_hold(tmp_path, caplog):
    """A chunk file of a killed build whose checksum sidecar holds but which has fewer rows than its range (3 for
    items 4-8) is not taken as done: it is removed, with a warning naming its shape and the 4 rows it should hold.
    Survivors: the rows check ``shape[0] == end - start`` → ``<=`` (the short chunk taken), and the message's
    ``end - start`` → ``end * start`` ("(32, d)")."""
    import logging

    from test_cache import CHUNK, COUNTS, META, fake_vectors, write_some_chunks

    from gapdiag.cache import EmbeddingCache, integrity

    cache = EmbeddingCache(tmp_path / "c")
    write_some_chunks(cache, "k", 1)
    short = cache.path("k") / "chunks" / "image.4-8.npy"
    np.save(short, fake_vectors("image", 4, 7))
    integrity.write_sidecar(short, integrity.checksum(short))
    assert integrity.chunk_problem(short) is None  # its checksum holds: only its shape is wrong
    with caplog.at_level(logging.WARNING, logger="gapdiag"), cache.writer("k", META, chunk_size=CHUNK) as w:
        w.chunk_ranges("image", COUNTS["image"])
        assert [w.is_done("image", s, e) for s, e in ((0, 4), (4, 8))] == [True, False]
    assert not short.exists()
    (warning,) = [r.getMessage() for r in caplog.records if "image.4-8.npy" in r.getMessage()]
    assert "is not (4, d) float32" in warning and "(3, " in warning


@pytest.mark.parametrize("versions", [("0.1.0", "0.2.0"), ("0.2.0", "0.1.0")])
def test_reports_of_different_gapdiag_versions_are_warned_about_in_either_order(versions):
    """Two reports written by different gapdiag versions get a provenance warning, whichever is the newer.
    Survivor: ``reference.version != other.version`` → ``<`` (a newer baseline compared with an older report was
    not warned about)."""
    from test_check import BASE, make_report

    from gapdiag.check import provenance_conflicts

    conflicts, warnings = provenance_conflicts(*(make_report(BASE, version=v) for v in versions))
    assert conflicts == []
    assert len(warnings) == 1 and "different gapdiag versions" in warnings[0]
    assert all(v in warnings[0] for v in versions)
    assert provenance_conflicts(make_report(BASE), make_report(BASE)) == ([], [])


def test_a_failed_cache_write_names_what_the_os_said():
    """A failed write of a cache file is "cannot write <path>: <the OS's words>" (``strerror``), or the exception's
    own line when the OS gave none. Survivor: ``exc.strerror or one_line(exc)`` → ``and`` ("[Errno 13] Permission
    denied: …" for the first, "None" for the second)."""
    import errno
    from pathlib import Path

    from gapdiag.cache.files import write_error

    path = Path("c/e/meta.json")
    denied = write_error(path, PermissionError(errno.EACCES, "Permission denied", str(path)))
    assert denied.message == f"cannot write {path}: Permission denied"
    assert write_error(path, OSError("the mount went away")).message == f"cannot write {path}: the mount went away"


def test_the_search_backend_recorded_is_the_one_the_engine_ran_on(monkeypatch):
    """The values' provenance names the search backend each engine ran on: with a CUDA torch stubbed onto the CPU,
    the exact engine ("faiss", a flat index) runs on torch-cuda and HNSW (no GPU version) on faiss-cpu.
    Survivor: the index passed to ``search_backend`` ``"flat" if engine == "faiss"`` → ``!=`` (the exact engine
    recorded as faiss-cpu, HNSW as the flat index's backend)."""
    pytest.importorskip("torch")
    from gapdiag.metrics import search_index

    monkeypatch.setattr(search_index, "_use_gpu", lambda device: ("torch", 0))
    monkeypatch.setattr(search_index, "_torch_device", lambda gpu_id: "cpu")
    rng = np.random.default_rng(12)
    es = EmbeddingSet({"image": rng.normal(size=(30, 4)).astype(np.float32),
                       "text": rng.normal(size=(30, 4)).astype(np.float32)},
                      {"image": np.arange(30), "text": np.arange(30)}, 30)
    for engine, backend in (("faiss", "torch-cuda"), ("hnsw", "faiss-cpu")):
        _, extras = compute_all(es, ["recall_at_1"], retrieval_engine=engine, device="cpu")
        assert extras["variants"]["search_backend"] == backend, engine


def test_the_overlap_histogram_has_a_bin_for_every_count_from_0_to_k():
    """``compare_embeddings``' overlap histogram has k + 1 bins (0..k shared neighbours), also when no item shares
    all k (two unrelated sets, k = 3: the top bins are 0), and counts every item. Survivor: ``minlength=kk + 1`` →
    ``kk ^ 1`` (2 bins for k = 3, the histogram cut at the largest count met)."""
    from gapdiag.metrics.similarity import compare_embeddings

    rng = np.random.default_rng(13)

    def embeddings():
        return EmbeddingSet({"image": rng.normal(size=(30, 6)).astype(np.float32)}, {"image": np.arange(30)}, 30)

    _, extras = compare_embeddings(embeddings(), embeddings(), k=3)
    histogram = extras["overlap_histogram/image"]
    assert len(histogram) == 4 and sum(histogram) == 30
    assert histogram[3] == 0  # unrelated sets: no item keeps all 3 neighbours


def test_a_skipped_value_is_an_immutable_reason():
    """A value function's ``Skip`` is a value (its reason goes to ``extras["skipped"]`` as it was made): it cannot
    be changed afterwards. Survivor: ``@dataclass(frozen=True)`` → ``frozen=False`` on ``Skip``."""
    import dataclasses

    from gapdiag.metrics.passes import Skip

    skip = Skip("needs at least 2 items")
    with pytest.raises(dataclasses.FrozenInstanceError):
        skip.reason = "something else"  # type: ignore[misc]


def test_a_shared_writer_joins_a_build_rank_0_prepared_and_refuses_one_it_did_not(tmp_path):
    """``cache.writer(…, shared=True)`` (the other ranks of a distributed job) takes no lock and joins the entry
    that rank 0 prepared, writing its own chunks; with nothing prepared it is a one-line error. Survivor: the
    prepared entry's ``self.dir / "partial.json"`` → ``self.dir | …`` (a ``TypeError`` on every rank but 0; the
    distributed test catches it in 11 s, this one in well under a second)."""
    from test_cache import CHUNK, COUNTS, META, fake_vectors

    from gapdiag.cache import EmbeddingCache
    from gapdiag.errors import CacheError

    cache = EmbeddingCache(tmp_path / "c")
    with pytest.raises(CacheError, match="cache entry k was not prepared by rank 0"), \
            cache.writer("k", META, chunk_size=CHUNK, shared=True):
        pass
    with cache.writer("k", META, chunk_size=CHUNK) as rank_0:
        rank_0.chunk_ranges("image", COUNTS["image"])
        with cache.writer("k", META, chunk_size=CHUNK, shared=True) as rank_1:
            rank_1.chunk_ranges("image", COUNTS["image"])
            rank_1.write_chunk("image", 4, fake_vectors("image", 4, 8))
        assert rank_0.is_done("image", 4, 8) and not rank_0.is_done("image", 0, 4)
