"""gapdiag.Monitor (issue #28 §2): batch by batch it equals measure on the same vectors, exact for the linear
metrics and on the same sample for the pair metrics; bad batches are refused in one line and lose nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gapdiag
from gapdiag.errors import InputError
from gapdiag.metrics import compute_all
from gapdiag.metrics.engine import streamed_metrics
from gapdiag.training.monitor import PAIR_METRICS, Monitor
from gapdiag.vectors import EmbeddingSet
from tests.cli_helpers import gapdiag as run_cli

N, D = 53, 12


def _pairs(n: int = N, d: int = D, seed: int = 0, captions: int = 1):
    """Raw (unnormalised) image vectors, ``captions`` texts per image near it, and 4 classes."""
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, d)).astype(np.float32) + 0.5
    owner = np.repeat(np.arange(n), captions)
    text = (image[owner] * 0.3 + rng.normal(size=(n * captions, d))).astype(np.float32) - 0.4
    return image, text, owner, rng.integers(0, 4, size=n)


def _feed(monitor: Monitor, image, text, owner, labels=None, sizes=(7, 3, 11), indices=False) -> Monitor:
    """Feed every sample in batches of the cycling ``sizes`` (none divides N)."""
    start, i = 0, 0
    while start < image.shape[0]:
        stop = min(start + sizes[i % len(sizes)], image.shape[0])
        rows = np.flatnonzero((owner >= start) & (owner < stop))
        monitor.update(torch.from_numpy(image[start:stop]), torch.from_numpy(text[rows]),
                       None if labels is None else torch.from_numpy(labels[start:stop]),
                       indices=torch.arange(start, stop) if indices else None,
                       text_sample=torch.from_numpy(owner[rows] - start) if text.shape[0] != image.shape[0] else None)
        start, i = stop, i + 1
    return monitor


def _es(image, text, owner, labels=None) -> EmbeddingSet:
    return EmbeddingSet({"image": image, "text": text}, {"image": np.arange(image.shape[0]), "text": owner},
                        image.shape[0], labels=labels)


@pytest.mark.parametrize("captions", [1, 3])
def test_linear_metrics_fed_in_batches_equal_compute_all_on_every_vector(captions):
    image, text, owner, _ = _pairs(captions=captions)
    got = _feed(Monitor(streamed_metrics()), image, text, owner).compute()
    want, _ = compute_all(_es(image, text, owner), streamed_metrics())
    assert {"modality_gap/image-text", "cos_tp/image-text", "angular_value/text", "effective_rank/joint",
            "gap_w2_squared/image-text", "gap_bures/image-text", "uniformity_w2/joint"} <= set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert got["monitor/samples"] == N


def test_pair_metrics_with_total_equal_compute_all_with_the_same_sample_and_seed():
    image, text, owner, labels = _pairs()
    monitor = _feed(Monitor(sample=20, seed=3, total=N), image, text, owner, labels, indices=True)
    got = monitor.compute()
    want, _ = compute_all(_es(image, text, owner, labels), list(PAIR_METRICS), sample=20, seed=3)
    assert "recall_at_1/image_to_text" in want and "v_measure_class/joint" in want
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert got["monitor/sample_size"] == 20 and got["monitor/seed"] == 3


def test_monitor_equals_gapdiag_measure_on_the_same_vectors(tmp_path, capsys):
    image, text, owner, labels = _pairs()
    np.savez(tmp_path / "emb.npz", image=image, text=text, labels=labels)
    metrics = ["modality_gap", "cos_tp", "angular_value", "effective_rank", "gap_bures", "recall_at_1",
               "uniformity_wang_isola", "hubness_skewness", "v_measure_class"]
    code, out, err = run_cli(capsys, "measure", "-d", tmp_path / "emb.npz", "--metrics", ",".join(metrics),
                             "--sample", 25, "--seed", 4, "--json", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    measured = json.loads(out)["metrics"]
    got = _feed(Monitor(metrics, sample=25, seed=4, total=N), image, text, owner, labels, indices=True).compute()
    assert set(measured) <= set(got)
    for name, value in measured.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_without_total_the_sample_is_a_seeded_bounded_draw_whatever_the_batches():
    image, text, owner, labels = _pairs(captions=2)
    one = _feed(Monitor(sample=16, seed=7), image, text, owner, labels, sizes=(53,))
    other = _feed(Monitor(sample=16, seed=7), image, text, owner, labels, sizes=(2, 9))
    kept = one._reservoir.ids
    assert kept.size == 16 and np.array_equal(kept, other._reservoir.ids)
    assert not np.array_equal(kept, _feed(Monitor(sample=16, seed=8), image, text, owner, labels)._reservoir.ids)
    # The pair metrics are those of measure on exactly the kept samples (all their captions).
    rows = np.flatnonzero(np.isin(owner, kept))
    sub = _es(image[kept], text[rows], np.searchsorted(kept, owner[rows]), labels[kept])
    want, _ = compute_all(sub, list(PAIR_METRICS), seed=7)
    got = one.compute()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert got["monitor/sample_size"] == 16 and got["monitor/samples"] == N


def test_result_is_a_plain_dict_of_floats_and_says_what_it_skipped():
    image, text, owner, _ = _pairs()
    result = _feed(Monitor(sample=10), image, text, owner).compute()
    assert isinstance(result, dict) and all(isinstance(v, float) for v in result.values())
    assert "v_measure_class" in result.skipped and "labels" in result.skipped["v_measure_class"]
    assert "gap_vector/image-text" in result.extras


def test_reset_forgets_every_batch():
    image, text, owner, _ = _pairs()
    monitor = _feed(Monitor(["modality_gap"]), image, text, owner)
    monitor.reset()
    monitor.update(torch.from_numpy(image[:5]), torch.from_numpy(text[:5]))
    want, _ = compute_all(_es(image[:5], text[:5], np.arange(5)), ["modality_gap"])
    assert monitor.compute()["modality_gap/image-text"] == pytest.approx(want["modality_gap/image-text"])
    assert monitor.compute()["monitor/samples"] == 5


@pytest.mark.parametrize(("poison", "fragment"), [(np.nan, "NaN or infinite"), (0.0, "zero vector")])
def test_a_bad_row_is_named_and_the_batches_before_it_are_kept(poison, fragment):
    image, text, owner, _ = _pairs()
    monitor = _feed(Monitor(["modality_gap", "cos_tp", "recall_at_1"], sample=8), image[:20], text[:20], owner[:20])
    before = monitor.compute()
    bad = text[20:30].copy()
    bad[4] = poison
    with pytest.raises(InputError, match=f"update 4, text_emb row 4 is a {fragment}"):
        monitor.update(torch.from_numpy(image[20:30]), torch.from_numpy(bad))
    after = monitor.compute()
    assert after == before


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"image_emb": np.ones((3, 4)), "text_emb": np.ones((3, 5))}, "must keep one dimension"),
    ({"image_emb": np.ones((3, 4)), "text_emb": np.ones((4, 4))}, "pass text_sample="),
    ({"image_emb": np.ones((3, 4)), "text_emb": np.ones((3, 4)), "labels": [1, 2]}, "labels must be 3 integers"),
    ({"image_emb": np.ones((3, 4)), "text_emb": np.ones((3, 4)), "indices": [0, 1, 9]}, "outside 0..4"),
    ({"image_emb": np.ones(4), "text_emb": np.ones((3, 4))}, "(rows, dim) float tensor"),
])
def test_bad_batches_are_refused_in_one_line(kwargs, fragment):
    kwargs = {k: torch.as_tensor(v) for k, v in kwargs.items()}
    monitor = Monitor(["modality_gap"], total=5)
    with pytest.raises(InputError, match="monitor") as err:
        monitor.update(**kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_sample_given_twice_is_refused():
    image, text, _, _ = _pairs()
    monitor = Monitor(sample=100)
    monitor.update(torch.from_numpy(image[:4]), torch.from_numpy(text[:4]), indices=torch.arange(4))
    with pytest.raises(InputError, match="sample index 2 was given twice"):
        monitor.update(torch.from_numpy(image[4:8]), torch.from_numpy(text[4:8]), indices=torch.tensor([2, 5, 6, 7]))


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"metrics": ["conformity_w1"]}, "cannot compute conformity_w1"),
    ({"metrics": ["nope"]}, "cannot compute nope"),
    ({"sample": 1}, "sample must be an integer >= 2"),
    ({"seed": -1}, "seed must be"),
    ({"total": 0}, "total must be"),
])
def test_bad_options_are_refused(kwargs, fragment):
    with pytest.raises(InputError) as err:
        Monitor(**kwargs)
    assert fragment in str(err.value)


def test_compute_before_update_and_update_after_sync_are_refused(monkeypatch):
    monitor = Monitor()
    with pytest.raises(InputError, match="before any update"):
        monitor.compute()
    monitor.sync()  # no process group: nothing to gather, updates still accepted
    image, text, _, _ = _pairs()
    monitor.update(torch.from_numpy(image[:4]), torch.from_numpy(text[:4]))
    monitor._synced = True  # as after a sync across ranks
    with pytest.raises(InputError, match="after sync"):
        monitor.update(torch.from_numpy(image[:4]), torch.from_numpy(text[:4]))


def test_half_precision_batches_are_measured_in_float32():
    image, text, owner, _ = _pairs()
    got = _feed(Monitor(["modality_gap"]), image.astype(np.float16), text.astype(np.float16), owner).compute()
    want, _ = compute_all(_es(image.astype(np.float16), text.astype(np.float16), owner), ["modality_gap"])
    assert got["modality_gap/image-text"] == pytest.approx(want["modality_gap/image-text"], rel=1e-9)


def test_monitor_is_exported_lazily():
    assert gapdiag.Monitor is Monitor


def _rank(rank: int, init: str, out: str, with_indices: bool) -> None:
    """One of two gloo ranks: every other sample (a DistributedSampler's share), then sync and compute."""
    import pickle

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        image, text, owner, labels = _pairs(captions=2)
        monitor = Monitor(sample=17, seed=5, total=N if with_indices else None)
        mine = np.arange(rank, N, 2)
        for batch in np.array_split(mine, 4):
            rows = np.flatnonzero(np.isin(owner, batch))
            monitor.update(torch.from_numpy(image[batch]), torch.from_numpy(text[rows]),
                           torch.from_numpy(labels[batch]), indices=torch.from_numpy(batch) if with_indices else None,
                           text_sample=torch.from_numpy(np.searchsorted(batch, owner[rows])))
        monitor.sync()
        monitor.sync()  # a second call changes nothing
        result = monitor.compute()
        with open(f"{out}.{rank}", "wb") as f:
            pickle.dump((dict(result), monitor._reservoir.ids), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("with_indices", [True, False])
def test_two_gloo_ranks_equal_one_process(tmp_path, with_indices):
    import pickle

    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "result"), with_indices), nprocs=2)
    image, text, owner, labels = _pairs(captions=2)
    one = Monitor(sample=17, seed=5, total=N if with_indices else None)
    one = _feed(one, image, text, owner, labels, indices=with_indices)
    want = one.compute()
    for rank in (0, 1):
        with open(tmp_path / f"result.{rank}", "rb") as f:
            got, ids = pickle.load(f)
        np.testing.assert_array_equal(ids, one._reservoir.ids)
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_modalities_name_the_metrics_as_measure_names_the_dataset():
    image, text, owner, _ = _pairs()
    es = EmbeddingSet({"photo": image, "caption": text}, {"photo": np.arange(N), "caption": owner}, N)
    want, _ = compute_all(es, ["modality_gap", "recall_at_1"])
    got = _feed(Monitor(["modality_gap", "recall_at_1"], modalities=("photo", "caption")), image, text, owner).compute()
    assert {k: got[k] for k in want} == pytest.approx(want)


def test_without_pair_metrics_no_sample_is_kept():
    image, text, owner, _ = _pairs()
    monitor = _feed(Monitor(["modality_gap", "effective_rank"]), image, text, owner)
    assert len(monitor._reservoir) == 0
    assert monitor.compute()["monitor/sample_size"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the state then lives on it)")
def test_batches_on_a_gpu_give_the_values_of_the_cpu():
    image, text, owner, labels = _pairs(captions=2)
    cpu = _feed(Monitor(sample=20, seed=1), image, text, owner, labels).compute()
    gpu = Monitor(sample=20, seed=1)
    for start in range(0, N, 16):
        rows = np.flatnonzero((owner >= start) & (owner < start + 16))
        gpu.update(torch.from_numpy(image[start:start + 16]).cuda(), torch.from_numpy(text[rows]).cuda(),
                   torch.from_numpy(labels[start:start + 16]).cuda(),
                   text_sample=torch.from_numpy(owner[rows] - start).cuda())
    assert gpu._stats["image"][1].device.type == "cuda"
    got = gpu.compute()
    assert set(got) == set(cpu)
    for name, value in cpu.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_labels_for_some_batches_only_are_refused_even_when_no_row_enters_the_sample():
    from gapdiag.metrics.sampling import seeded_samples

    image, text, _, labels = _pairs(n=8)
    drawn = seeded_samples(8, 2, 0)
    rest = np.setdiff1d(np.arange(8), drawn)
    monitor = Monitor(sample=2, total=8)
    monitor.update(torch.from_numpy(image[drawn]), torch.from_numpy(text[drawn]), torch.from_numpy(labels[drawn]),
                   indices=torch.from_numpy(drawn))
    with pytest.raises(InputError, match="labels were given for some batches and not for others"):
        monitor.update(torch.from_numpy(image[rest]), torch.from_numpy(text[rest]), indices=torch.from_numpy(rest))
    assert monitor.compute()["monitor/samples"] == 2  # the refused batch added nothing


@pytest.mark.parametrize(("first", "second"), [
    ([0, 1, 2, 3], [4, 4, 5, 6]),  # twice in one batch
    ([0, 1, 2, 3], [7, 1, 5, 6]),  # again in a later batch, with total=: known even outside the sample
])
def test_a_sample_id_seen_twice_is_refused_and_the_batch_adds_nothing(first, second):
    image, text, _, _ = _pairs(n=8)
    monitor = Monitor(sample=2, total=8)
    monitor.update(torch.from_numpy(image[:4]), torch.from_numpy(text[:4]), indices=torch.tensor(first))
    before = monitor.compute()
    with pytest.raises(InputError, match=r"sample index \d was given twice"):
        monitor.update(torch.from_numpy(image[4:]), torch.from_numpy(text[4:]), indices=torch.tensor(second))
    assert monitor.compute() == before


def test_ranks_that_both_saw_a_sample_are_refused_on_merge_even_outside_the_sample():
    from gapdiag.training.reservoir import Reservoir

    ranks = [Reservoir(2, 0, total=8), Reservoir(2, 0, total=8)]
    for reservoir, ids in zip(ranks, (np.array([0, 1, 2, 3, 4]), np.array([4, 5, 6, 7]))):
        reservoir.wanted(ids)
        reservoir.mark_seen(ids)
    with pytest.raises(InputError, match="sample index 4 was given twice"):
        ranks[0].merge(ranks[1])


@pytest.mark.parametrize("text_sample", [[], [0, 1, 3, 0], [0.0, 1.0, 2.0, 0.0]])
def test_text_sample_of_the_wrong_length_range_or_type_is_one_line(text_sample):
    monitor = Monitor(["cos_tp"])
    with pytest.raises(InputError, match="text_sample must be 4 image row numbers in 0..2"):
        monitor.update(torch.ones(3, 4), torch.ones(4, 4), text_sample=torch.tensor(text_sample))


def test_a_pair_metric_that_reads_more_than_the_sample_is_refused(monkeypatch):
    """The sample holds unit vectors, labels and ids only: a metric that also reads every item, the raw vectors or
    other data (a need the Monitor does not know) would get a plausible wrong number, so it is refused."""
    from dataclasses import replace

    from gapdiag.metrics import registry
    from gapdiag.metrics.passes import ITEMS, SAMPLE

    fake = replace(registry.REGISTRY["v_measure_modality"], name="reads_items", needs=frozenset({SAMPLE, ITEMS}))
    monkeypatch.setitem(registry.REGISTRY, "reads_items", fake)
    with pytest.raises(InputError, match="cannot compute reads_items"):
        Monitor(["reads_items"])
    assert "v_measure_modality" in Monitor().pairs
