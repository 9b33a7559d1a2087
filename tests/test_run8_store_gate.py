"""Issue #25, run 8: what the cache and gate survivors of the fresh samples (seeds 32, 33) showed no test asserted.

Each test fails with its survivor applied and passes without (docs/reliability.md, "Run 8"). Two more survivors
of these modules are equivalent and have no test: ``load_checked(path, key, *, ...)`` → ``/`` (every caller passes
``path`` and ``key`` by position and the rest by keyword) and ``refuse_checking_nothing``'s ``status != "skip"`` →
``< "skip"`` (a status is the Literal ``"pass"``, ``"fail"`` or ``"skip"``; the first two sort before
``"skip"``). The entries are built with the closed-form fake vectors of ``test_cache`` (no model).
"""

from __future__ import annotations

import json
import re

import filelock
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, gapdiag
from test_cache import COUNTS, META, SAMPLE_INDEX, build_entry, expected, fake_vectors

from gapdiag.cache import HASHES_FILE, EmbeddingCache, EntryWriter, derived, integrity
from gapdiag.check import load_rules
from gapdiag.check.compare import similarity_to_markdown
from gapdiag.errors import CacheError, ConfigError

# ------------------------------------------------------------------------------------------------ cache verify


def test_cache_verify_names_a_missing_file_of_a_complete_entry_and_goes_on(tmp_path, capsys):
    """``cache verify`` on a complete entry one of whose files was deleted reports ``file is missing`` for it
    (and still checks the files after it), exit 2 with one line; no ``FileNotFoundError`` escapes.
    Survivor: ``except OSError`` around the files' ``stat`` → an exception that never matches."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "aaaa")
    (cache.path("aaaa") / "image.npy").unlink()
    with open(cache.path("aaaa") / "text.npy", "r+b") as f:  # a damaged file after the missing one
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    (result,) = cache.verify("aaaa")
    assert not result["ok"]
    reasons = {p["file"]: p["reason"] for p in result["problems"]}
    assert reasons["image.npy"] == "file is missing"
    assert reasons["text.npy"].startswith("checksum mismatch")
    code, out, err = gapdiag(capsys, "cache", "verify", "aaaa", "--cache-dir", str(tmp_path / "c"))
    assert out.split() == ["aaaa", "CORRUPT", "5", "files"]
    assert_one_line_error(code, "", err, "aaaa/image.npy: file is missing", "aaaa/text.npy: checksum mismatch")


def test_cache_verify_reports_a_damaged_memoised_result_of_an_entry(tmp_path):
    """A result memoised from an entry (``derived/<key>/``) that no longer matches its ``.sha256`` sidecar is
    reported by ``verify`` (docs/cache.md: "``gapdiag cache verify`` reports it"), counted among the entry's files.
    Survivor: ``for memo in derived_files(root, key)`` → ``for memo in []``."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "aaaa")
    memo = tmp_path / "c" / integrity.DERIVED_DIR / "aaaa" / "report-0123.json"
    derived.save_json(memo, {"metrics": {"modality_gap/image-text": 0.5}})
    (clean,) = cache.verify("aaaa")
    assert clean["ok"] and clean["files"] == 5 + 1  # 2 modalities x 2 arrays, labels, the memo
    memo.write_text(json.dumps({"metrics": {"modality_gap/image-text": 0.1}}))
    (result,) = cache.verify("aaaa")
    assert not result["ok"]
    (problem,) = result["problems"]
    assert problem["file"] == "derived/report-0123.json"
    assert problem["reason"].startswith("checksum mismatch") and "computes it again" in problem["reason"]


def test_an_edited_meta_json_names_both_checksums_to_the_same_number_of_digits(tmp_path):
    """The message for an edited ``meta.json`` shows the recorded and the recomputed checksum as
    ``sha256:`` plus their first 12 hex digits each, so that the two can be compared at a glance (docs/cache.md).
    Survivor: the recorded one cut at ``[:18]`` (11 digits) instead of ``[:19]``."""
    cache = EmbeddingCache(tmp_path / "c")
    build_entry(cache, "aaaa")
    meta_path = cache.path("aaaa") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["class_names"] = ["a", "b", "z"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError) as info:
        cache.get("aaaa")
    shown = re.search(r"meta_checksum is (sha256:\w+)…, its content gives (sha256:\w+)…", info.value.message)
    assert shown is not None, info.value.message
    recorded, found = shown.groups()
    assert meta["meta_checksum"].startswith(recorded)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", recorded) and re.fullmatch(r"sha256:[0-9a-f]{12}", found)
    assert recorded != found


# -------------------------------------------------------------------------------------------------- cache rm


def test_only_rm_all_forgets_the_checkpoint_hashes(tmp_path):
    """``cache rm <key>`` removes that entry and keeps ``hashes.json`` (the other entries' checkpoints need not
    be hashed again); ``cache rm all`` also forgets it (docs/cache.md), whether ``"all"`` is the literal or a
    string built at run time (from a command line). Survivor: ``key_or_prefix == "all"`` → ``is not "all"``."""
    root = tmp_path / "c"
    cache = EmbeddingCache(root)
    hashes = root / HASHES_FILE

    def remember_a_checkpoint() -> None:
        # What file_sha256(checkpoint, cache_dir=root) leaves once a checkpoint's stats have settled.
        hashes.write_text('{"/models/a.bin": {"sha256": "' + "0" * 64 + '"}}')

    for key in ("aaaa", "bbbb", "cccc"):
        build_entry(cache, key)
    remember_a_checkpoint()
    assert cache.rm("aaaa") == ["aaaa"]
    assert cache.rm("bb") == ["bbbb"]
    assert hashes.is_file()
    assert cache.rm("all") == ["cccc"]
    assert not hashes.exists()
    build_entry(cache, "dddd")
    remember_a_checkpoint()
    assert cache.rm("ALL".lower()) == ["dddd"]  # built at run time as from a command line: not the interned literal
    assert not hashes.exists()


# ------------------------------------------------------------------------------------------------ EntryWriter


def test_an_entry_writer_made_directly_takes_the_lock_and_builds_the_entry_itself(tmp_path):
    """:class:`EntryWriter` is public (``gapdiag.cache``); made without ``shared`` it is a build of its own, as
    :meth:`EmbeddingCache.writer`'s is: it takes the entry's lock (and writes the owner note), prepares the
    entry and finalizes it, rather than joining a build that a rank 0 prepared (which it would refuse here,
    nothing being prepared). Survivor: the default ``shared=False`` → ``True``."""
    root = tmp_path / "c"
    root.mkdir()
    with EntryWriter(root, "abcd", META, chunk_size=4) as writer:
        lock = integrity.entry_lock(root, "abcd")
        with pytest.raises(filelock.Timeout):
            lock.acquire(timeout=0)
        assert integrity.owner_path(root / "abcd.lock").is_file()
        for modality, n in COUNTS.items():
            for start, end in writer.chunk_ranges(modality, n):
                writer.write_chunk(modality, start, fake_vectors(modality, start, end))
        writer.finalize(sample_index=SAMPLE_INDEX)
    entry = EmbeddingCache(root).get("abcd")
    assert entry is not None
    for modality in COUNTS:
        np.testing.assert_array_equal(entry.vectors[modality], expected(modality))


# ------------------------------------------------------------------------------------------------ check config


def test_load_rules_checks_names_against_the_metric_registry_by_default_and_the_given_one_otherwise(tmp_path):
    """Without ``registry`` a config's metric names are checked against gapdiag's registry (a misspelled name is
    a one-line config error naming it); with one, against that registry only (a name it lists is accepted,
    even one gapdiag's does not). Survivor: ``metric_registry() if registry is None else registry`` →
    ``if registry is not None``."""
    path = tmp_path / "gapdiag.toml"
    path.write_text('[check.rules."recal_at_1"]\nmax_drop = 0.01\n')
    with pytest.raises(ConfigError, match=r"check\.rules\.recal_at_1: unknown metric 'recal_at_1'"):
        load_rules(path)
    path.write_text('[check.rules."recall_at_1"]\nmin = 5\n')
    with pytest.raises(ConfigError, match="above the highest possible value 1 of recall_at_1"):
        load_rules(path)
    path.write_text('[check.rules."my_metric"]\nmax = 3\n')
    assert load_rules(path, registry={"my_metric": None}).rules["my_metric"].max == 3


# ----------------------------------------------------------------------------------------- compare markdown


def test_the_similarity_markdown_is_the_documented_tables_ending_in_one_newline():
    """``similarity_to_markdown`` (what ``compare --markdown`` appends for two models) is the set table, the
    note, and per modality (the joint set left out) the ``shown`` items whose neighbours changed most, as
    Markdown text ending in one newline. Survivor: ``"\\n".join(lines) + "\\n"`` → ``^`` (a TypeError)."""
    similarity = {
        "metrics": {"linear_cka/image": 0.91, "linear_cka_biased/image": 0.95, "mutual_knn/image": 0.5,
                    "linear_cka/text": 0.8, "mutual_knn/text": 0.4},
        "extras": {"changed/image": [{"item": i, "sample": 2 * i, "overlap": i / 10, "path": f"img{i}.jpg"}
                                     for i in range(7)],
                   "changed/joint": [{"item": 0, "sample": 0, "overlap": 0.0}]},
    }
    text = similarity_to_markdown(similarity, ["A|x", "B"], shown=2)
    assert text == """\
### What changed: A\\|x → B

| Set | Linear CKA | Linear CKA (biased) | Mutual k-NN |
|---|---|---|---|
| image | 0.9100 | 0.9500 | 0.5000 |
| text | 0.8000 | — | 0.4000 |

1 = unchanged; mutual k-NN = mean share of each item's 10 neighbours kept.

**image**: items whose neighbours changed most

| Item | Sample | Overlap | Path or caption |
|---|---|---|---|
| #0 | 0 | 0.00 | img0.jpg |
| #1 | 2 | 0.10 | img1.jpg |
"""
