"""Issue #23 items 4 and 5: what the api records of a run is that run's, and two datasets never share vectors.

Item 4: an in-memory :class:`PairedDataset` built without a fingerprint gets a content fingerprint, so two such
datasets never share a cache key. Item 5: the provenance of a report holds this run's words (dataset source and
name, model path, the sample actually used, skipped rows), never those of the run that filled the cache or the
memo: the memo may reuse numbers, never words.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import digits_manifest, write_digits

from gapdiag import api
from gapdiag.data.base import Modality, PairedDataset
from gapdiag.errors import InputError

# ---------------------------------------------------------------------------------- item 4: content fingerprint


def in_memory(images: list[Path], captions: list[str], labels: list[int] | None = None) -> PairedDataset:
    """A dataset built in a notebook: no reader, so no fingerprint."""
    n = len(images)
    return PairedDataset(
        name="notebook", source="<memory>", n_samples=n,
        modalities={"image": Modality("image", "image", list(images), np.arange(n)),
                    "text": Modality("text", "text", list(captions), np.arange(n))},
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        class_names=None if labels is None else [str(i) for i in range(max(labels) + 1)],
    )


def test_two_in_memory_datasets_without_a_fingerprint_never_share_an_entry(tmp_path):
    images = write_digits(tmp_path / "img", [0, 1, 2, 3])
    first = in_memory(images, ["a zero", "a one", "a two", "a three"])
    second = in_memory(images, ["a cat", "a dog", "a cow", "a hen"])
    assert first.fingerprint == second.fingerprint == ""
    es1 = api.embed(first, device="cpu", progress=False)
    es2 = api.embed(second, device="cpu", progress=False)
    assert es1.provenance["key"] != es2.provenance["key"]
    assert not np.array_equal(np.asarray(es1.vectors["text"]), np.asarray(es2.vectors["text"]))
    np.testing.assert_array_equal(np.asarray(es1.vectors["image"]), np.asarray(es2.vectors["image"]))
    assert first.fingerprint == "", "the caller's object is left as it was"
    assert es1.provenance["dataset"]["fingerprint"] and es1.provenance["dataset"]["fingerprint"] != \
        es2.provenance["dataset"]["fingerprint"]


def test_the_content_fingerprint_follows_content_not_identity(tmp_path):
    from gapdiag.api.embedding import content_fingerprint

    images = write_digits(tmp_path / "img", [0, 1, 2])
    captions = ["a zero", "a one", "a two"]
    base = content_fingerprint(in_memory(images, captions, [0, 1, 2]))
    assert content_fingerprint(in_memory(list(images), list(captions), [0, 1, 2])) == base  # equal content
    copy = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "img", copy)
    assert content_fingerprint(in_memory(sorted(copy.glob("*.png")), captions, [0, 1, 2])) == base  # moved
    changed = {
        "a caption": in_memory(images, ["a zero", "a one", "a 2"], [0, 1, 2]),
        "a label": in_memory(images, captions, [0, 1, 1]),
        "the pairing": in_memory(images[::-1], captions, [0, 1, 2]),
        "no labels": in_memory(images, captions),
    }
    for what, dataset in changed.items():
        assert content_fingerprint(dataset) != base, what
    images[1].write_bytes(images[2].read_bytes())  # an image's bytes
    assert content_fingerprint(in_memory(images, captions, [0, 1, 2])) != base


def test_an_in_memory_item_that_cannot_be_fingerprinted_is_refused_in_one_line(tmp_path):
    from PIL import Image

    dataset = in_memory([Image.new("RGB", (4, 4))], ["a square"])
    with pytest.raises(InputError, match="fingerprint") as info:
        api.embed(dataset, device="cpu", progress=False)
    assert "\n" not in str(info.value) and "image item 0" in str(info.value)


# ---------------------------------------------------------------------------------- item 5: this run's words


def _copy_data(manifest: Path, to: Path) -> Path:
    shutil.copytree(manifest.parent, to)
    return to / manifest.name


def test_a_copy_of_the_data_records_its_own_source_and_paths(manifest, tmp_path):
    first = api.measure(manifest, device="cpu", progress=False)
    copy = _copy_data(manifest, tmp_path / "copy")
    again = api.measure(copy, device="cpu", progress=False)
    assert again.provenance["cache_key"] == first.provenance["cache_key"]  # the same vectors, reused
    assert again.metrics == pytest.approx(first.metrics, nan_ok=True, abs=0, rel=0)  # and the same numbers
    assert first.provenance["dataset"]["source"] == str(manifest)
    assert again.provenance["dataset"]["source"] == str(copy)
    assert again.provenance["dataset"]["name"] == "copy"
    described = [entry["path"] for key, value in again.extras.items() if key.startswith("hubness/")
                 for entry in value.get("hubs", []) if "path" in entry]
    assert described and all(p.startswith(str(copy.parent)) for p in described), described


def test_an_absolute_model_path_stays_absolute(tiny_checkpoint, manifest, tmp_path, monkeypatch):
    local = tmp_path / "models" / "tiny.safetensors"
    local.parent.mkdir()
    shutil.copy(tiny_checkpoint, local)
    monkeypatch.chdir(local.parent)
    relative = api.measure(manifest, "tiny.safetensors", device="cpu", progress=False, metrics=["modality_gap"])
    absolute = api.measure(manifest, local, device="cpu", progress=False, metrics=["modality_gap"])
    assert relative.provenance["model"]["checkpoint"] == "tiny.safetensors"
    assert absolute.provenance["model"]["checkpoint"] == str(local)
    assert absolute.provenance["cache_key"] == relative.provenance["cache_key"]


def test_the_sample_records_what_was_used_and_what_was_asked(manifest):
    whole = api.measure(manifest, device="cpu", progress=False, sample=100_000, metrics=["modality_gap"])
    assert whole.provenance["sample"] == {"size": None, "requested": 100_000, "seed": 0}
    part = api.measure(manifest, device="cpu", progress=False, sample=5, seed=2, metrics=["modality_gap"])
    assert part.provenance["sample"] == {"size": 5, "seed": 2}
    exact = api.measure(manifest, device="cpu", progress=False, metrics=["modality_gap"])
    assert exact.provenance["sample"] == {"size": None, "seed": 0}
    assert whole.metrics == pytest.approx(exact.metrics, abs=0, rel=0)


@pytest.mark.parametrize("given", ["manifest.csv", "./manifest.csv"])
def test_a_relative_manifest_path_names_the_dataset(manifest, monkeypatch, given):
    monkeypatch.chdir(manifest.parent)
    report = api.measure(given, device="cpu", progress=False, metrics=["modality_gap"])
    assert report.provenance["dataset"]["name"] == manifest.parent.name
    assert report.provenance["dataset"]["source"] == str(Path(given))  # as given (pathlib drops the "."/")


def test_an_image_folder_given_as_dot_is_named_after_the_folder(tmp_path, monkeypatch):
    for label in ("zero", "one"):
        write_digits(tmp_path / "digits" / label, [0, 1] if label == "zero" else [2, 3])
    monkeypatch.chdir(tmp_path / "digits")
    assert api.load_data(".").name == "digits"


def test_skipped_rows_are_named_by_this_run(tmp_path):
    data, _ = digits_manifest(tmp_path / "orig", n=6)
    (data.parent / "images" / "digit_2.png").unlink()
    first = api.measure(data, device="cpu", progress=False, skip_bad=True, metrics=["modality_gap"])
    copy = _copy_data(data, tmp_path / "copy")
    again = api.measure(copy, device="cpu", progress=False, skip_bad=True, metrics=["modality_gap"])
    assert first.provenance["skipped"] and again.provenance["skipped"]
    assert all("copy" in line for line in again.provenance["skipped"]), again.provenance["skipped"]


def test_datasets_derived_from_ones_without_a_fingerprint_get_a_content_fingerprint_too(tmp_path):
    """Concatenated or filtered in-memory datasets: a hash of empty fingerprints would be one key for all."""
    from gapdiag.data.ops import concat_datasets, drop_samples

    images = write_digits(tmp_path / "img", [0, 1, 2, 3])
    a, b = in_memory(images[:2], ["a zero", "a one"]), in_memory(images[2:], ["a two", "a three"])
    c = in_memory(images[2:], ["a cat", "a dog"])
    ab, ac = concat_datasets([a, b]), concat_datasets([a, c])
    keys = {api.embed(d, device="cpu", progress=False).provenance["key"] for d in (ab, ac)}
    assert len(keys) == 2
    dropped = [drop_samples(d, {0}, ["row 1: unreadable"]) for d in (ab, ac)]
    keys = {api.embed(d, device="cpu", progress=False).provenance["key"] for d in dropped}
    assert len(keys) == 2
