"""The class-level caption note: repeated captions counted exactly, and one line in the table and the JSON."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import gapdiag
from data_fixtures import write_digits

from gapdiag.report.notes import count_repeated_items, count_repeats, repeat_notes
from gapdiag.vectors import EmbeddingSet


def test_counts_of_repeats():
    assert count_repeated_items(["a dog", "a cat", "a dog", "a dog"]) == 2
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    x[5], x[6] = x[0], 2 * x[0]  # the same direction twice more
    x[7] = x[1] + 1e-2  # close but another text
    assert count_repeats(x) == 2
    assert count_repeats(x, block_size=3) == 2


def _embeddings(n_text: int, repeats: int) -> EmbeddingSet:
    text = np.random.default_rng(1).normal(size=(n_text, 4)).astype(np.float32)
    text[n_text - repeats:] = text[0]
    image = np.random.default_rng(2).normal(size=(n_text, 4)).astype(np.float32)
    index = np.arange(n_text, dtype=np.int64)
    return EmbeddingSet(vectors={"image": image, "text": text}, sample_index={"image": index, "text": index},
                        n_samples=n_text)


def test_note_only_when_repeats_matter_for_recall():
    recall = ["recall_at_1/text_to_image", "zero_shot_accuracy/image"]
    counts, notes = repeat_notes(_embeddings(50, 10), recall)
    assert counts == {"image": 0, "text": 10}
    assert len(notes) == 1 and notes[0].startswith("10 of 50 text items repeat")
    assert "zero_shot_accuracy" in notes[0]
    assert repeat_notes(_embeddings(200, 1), recall)[1] == []  # one chance repeat in 200 (< 1 %)
    assert repeat_notes(_embeddings(50, 10), ["modality_gap/image-text"])[1] == []  # no R@K, nothing to say
    es = _embeddings(50, 0)
    es.provenance["repeated_items"] = {"text": 30}  # what embed counted on the captions themselves wins
    assert repeat_notes(es, recall)[0]["text"] == 30


def test_measure_notes_template_captions_in_table_and_json(capsys, tiny_checkpoint, manifest, tmp_path):
    for label, indices in (("zero", [0, 10, 20]), ("one", [1, 11, 21])):
        write_digits(tmp_path / "folder" / label, indices)
    code, out, _ = gapdiag(capsys, "measure", "-d", tmp_path / "folder", "-m", tiny_checkpoint, "--json")
    assert code == 0
    notes = json.loads(out)["extras"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("4 of 6 text items repeat")
    code, out, _ = gapdiag(capsys, "measure", "-d", tmp_path / "folder", "-m", tiny_checkpoint, "-q")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("note:")] == [f"note: {notes[0]}"]

    code, out, _ = gapdiag(capsys, "measure", "-d", manifest, "-m", tiny_checkpoint, "--json")
    assert code == 0 and "notes" not in json.loads(out).get("extras", {})  # distinct captions: nothing to say
