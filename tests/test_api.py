"""The library API (gapdiag.embed / gapdiag.measure): values against numpy written here, provenance, entry paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import gapdiag.embedding.encode as enc
from gapdiag import api
from gapdiag.errors import DatasetError, InputError
from gapdiag.report import split_metric_name
from gapdiag.vectors import EmbeddingSet

ONE_CAPTION = {"text_columns": ["caption_1"]}  # 1:1 pairs, so that pair i is image i with text i


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_measure_gap_and_cos_tp_match_numpy(tiny_checkpoint, manifest):
    report = api.measure(
        manifest,
        tiny_checkpoint,
        metrics=["modality_gap", "cos_tp"],
        device="cpu",
        progress=False,
        **ONE_CAPTION,
    )
    es = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False, **ONE_CAPTION)
    x, y = unit(es.vectors["image"]), unit(es.vectors["text"])
    assert x.shape == y.shape == (8, 32)
    # Liang et al. 2022: the gap is the distance between the centroids of the unit vectors (not renormalised).
    assert report["modality_gap/image-text"] == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)), abs=1e-6)
    # Grassucci et al.: Cos_TP is the mean cosine of the true pairs.
    assert report["cos_tp/image-text"] == pytest.approx(np.mean(np.sum(x * y, axis=1)), abs=1e-6)
    assert {split_metric_name(n)[0] for n in report.metrics} == {"modality_gap", "cos_tp"}


def test_measure_from_an_embedding_set_equals_measure_from_the_path(tiny_checkpoint, manifest):
    from_path = api.measure(manifest, tiny_checkpoint, device="cpu", progress=False)
    es = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False)
    assert isinstance(es, EmbeddingSet)
    from_set = api.measure(es, progress=False)
    assert from_set.metrics == pytest.approx(from_path.metrics, abs=1e-9)


def test_report_provenance(tiny_checkpoint, manifest):
    report = api.measure(
        manifest, tiny_checkpoint, metrics=["modality_gap"], device="cpu", progress=False, sample=5, seed=3
    )
    prov = report.provenance
    assert prov["model"]["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert prov["model"]["precision"] == "fp32"
    assert prov["dataset"]["source"] == str(manifest)
    assert prov["dataset"]["counts"] == {"image": 8, "text": 16}
    assert prov["sample"] == {"size": 5, "seed": 3}
    assert prov["device"] == "cpu" and prov["dtype"] == "float32"
    assert len(prov["cache_key"]) == 20


def test_embed_from_a_cache_entry_path_needs_no_model(tiny_checkpoint, manifest, monkeypatch, isolated_cache):
    es = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False)
    entry = Path(es.provenance["path"])
    assert entry == isolated_cache / es.provenance["key"] and (entry / "meta.json").is_file()
    monkeypatch.setattr(enc, "build_model", lambda *a, **k: pytest.fail("built a model for a cache entry"))
    again = api.embed(entry)
    assert again.provenance["path"] == str(entry)
    for name in es.vectors:
        np.testing.assert_array_equal(np.asarray(again.vectors[name]), np.asarray(es.vectors[name]))


def test_embed_dataset_object(tiny_checkpoint, manifest):
    dataset = api.load_data(manifest, split="test")
    es = api.embed(dataset, tiny_checkpoint, device="cpu", progress=False)
    assert es.counts() == {"image": dataset.n_samples, "text": 2 * dataset.n_samples}
    assert dataset.n_samples == 3  # digits 0, 3, 6 of the fixture are in the test split


def test_skip_bad_reports_reader_and_decode_skips(tiny_checkpoint, manifest):
    images = manifest.parent / "images"
    (images / "digit_1.png").unlink()  # dropped by the reader
    (images / "digit_5.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # dropped after a failed decode
    es = api.embed(manifest, tiny_checkpoint, device="cpu", progress=False, skip_bad=True)
    assert es.counts() == {"image": 6, "text": 12}
    skipped = es.provenance["skipped"]
    assert len(skipped) == 2
    assert any("digit_1.png" in line for line in skipped) and any("digit_5.png" in line for line in skipped)
    report = api.measure(es, progress=False, metrics=["modality_gap"])
    assert report.provenance["skipped"] == skipped


def test_skip_bad_with_every_image_unreadable_is_an_error(tiny_checkpoint, manifest):
    for png in (manifest.parent / "images").glob("*.png"):
        png.write_bytes(b"not an image")
    with pytest.raises(DatasetError) as err:
        api.embed(manifest, tiny_checkpoint, device="cpu", progress=False, skip_bad=True)
    assert "\n" not in str(err.value) and str(manifest) in str(err.value)


def test_measure_rejects_a_non_positive_sample(tiny_checkpoint, manifest):
    with pytest.raises(InputError, match="--sample"):
        api.measure(manifest, tiny_checkpoint, sample=0, progress=False)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
def test_measure_on_cuda_matches_cpu_whatever_the_faiss_build(tiny_checkpoint, manifest):
    # --device cuda embeds on the GPU; FAISS follows only if it is a GPU build (faiss-cpu on a GPU machine must
    # still work). The same checkpoint on the same data gives the same geometry up to float rounding.
    on_cpu = api.measure(manifest, tiny_checkpoint, device="cpu", precision="fp32", progress=False)
    on_gpu = api.measure(manifest, tiny_checkpoint, device="cuda", precision="fp32", progress=False)
    assert on_gpu.provenance["device"].startswith("cuda")
    assert on_gpu.metrics == pytest.approx(on_cpu.metrics, abs=1e-4)


def test_load_data_memoises_the_fingerprint_under_the_given_cache_dir(manifest, tmp_path, isolated_cache,
                                                                      monkeypatch):
    """Every reader of data (report hover labels, hub captions) keeps --cache-dir's memos under that root."""
    from gapdiag import fsutil

    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0)  # the data was written just now: memoise it anyway, no wait
    api.load_data(manifest, cache_dir=tmp_path / "mine")
    assert list((tmp_path / "mine" / "fingerprints").glob("*.txt"))
    assert not (isolated_cache / "fingerprints").exists()


def test_every_verb_has_explicit_keywords_and_a_documented_return_type():
    """Issue #26: no verb takes ``**options`` or returns ``Any``: each returns a dataclass, a record or a typed
    mapping that its docstring names, so that a notebook (and a type checker) sees what it gets."""
    import dataclasses
    import inspect
    import typing

    names = ("embed", "measure", "export", "shift", "compare_models", "plot", "report", "check", "compare", "train",
             "load_data", "load_model", "bundled_checkpoint", "cache_ls", "cache_rm", "cache_verify", "cache_dir",
             "similarity_to_baseline")
    verbs = [getattr(api, name) for name in names]
    for verb in verbs:
        signature = inspect.signature(verb, eval_str=True)
        assert not [p for p in signature.parameters.values()
                    if p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)], verb.__name__
        returned = signature.return_annotation
        assert returned not in (inspect.Signature.empty, typing.Any), verb.__name__
        named = [t for t in typing.get_args(returned) or (returned,) if isinstance(t, type)]
        for kind in named:
            if kind.__module__.startswith("gapdiag"):  # a gapdiag type: a dataclass or a typed mapping
                assert dataclasses.is_dataclass(kind) or typing.is_typeddict(kind), (verb.__name__, kind)


def test_measure_hands_the_metrics_a_resolved_device(tiny_checkpoint, manifest, monkeypatch):
    """The device is resolved once, at the door: the metrics get ``cpu``/``cuda``/``cuda:N``, never ``auto``."""
    import gapdiag.metrics

    seen = {}
    real = gapdiag.metrics.compute_all

    def spy(*args, **kwargs):
        seen["device"] = kwargs["device"]
        return real(*args, **kwargs)

    monkeypatch.setattr(gapdiag.metrics, "compute_all", spy)
    report = api.measure(manifest, tiny_checkpoint, metrics=["modality_gap"], progress=False)
    assert seen["device"] in ("cpu", "cuda") or seen["device"].startswith("cuda:")
    assert report.provenance["device"] == seen["device"] or seen["device"] == "cpu"  # mps searches on the CPU
