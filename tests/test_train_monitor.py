"""gapdiag train measures each epoch with gapdiag.Monitor (issue #28 §3): one line per epoch (loss, gap, R@1) on a
terminal and in a log alike, the Monitor's metrics in metrics.jsonl, equal to measuring that epoch's checkpoint."""

from __future__ import annotations

import json
import re

import pytest
import torch
from cli_helpers import gapdiag

from gapdiag.api import train
from gapdiag.data import load_dataset
from gapdiag.device import Device
from gapdiag.embedding.encode import embed_in_memory
from gapdiag.metrics import compute_all
from gapdiag.models.loading import build_model
from gapdiag.models.resolving import resolve_model
from gapdiag.settings import Settings
from gapdiag.training.evaluation import EPOCH_METRICS, LOGGED_METRICS
from tests.data_fixtures import digits_manifest

FAST = {"model": "gapdiag-tiny-vit", "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "seed": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory):
    path, _ = digits_manifest(tmp_path_factory.mktemp("train-monitor"), n=20)  # two captions per digit
    return path


def test_each_epoch_logs_the_monitor_metrics_of_its_checkpoint(manifest, tmp_path):
    pairs = load_dataset(manifest)
    train(pairs, out_dir=tmp_path / "run", epochs=2, progress=False, **FAST)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    spec = resolve_model("gapdiag-tiny-vit", cache_root=Settings.build().cache_root)
    for record in records:
        # Every epoch's checkpoint is kept (gapdiag track reads them) and measures to what was logged.
        ckpt = torch.load(tmp_path / "run" / "checkpoints" / f"epoch_{record['epoch']}.pt", weights_only=True)
        loaded = build_model(spec, device=Device("cpu"), init_seed=0)
        loaded.model.load_state_dict(ckpt["state_dict"])
        loaded.model.eval()
        want, _ = compute_all(embed_in_memory(pairs, loaded), list(LOGGED_METRICS))
        assert {"effective_rank/joint", "uniformity_wang_isola/joint", "gap_bures/image-text"} <= set(want)
        for name, value in want.items():
            assert record[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (record["epoch"], name)
        assert record["monitor/samples"] == record["monitor/sample_size"] == pairs.n_samples


def test_one_plain_line_per_epoch_with_loss_gap_and_r1_off_a_terminal(manifest, tmp_path, capsys):
    code, _out, err = gapdiag(capsys, "train", "--data", manifest,
                             "--out", tmp_path / "run", "--epochs", 2, "--batch-size", 8, "--device", "cpu")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line in lines:
        assert re.search(r"loss \S+ .*modality_gap/image-text \S+ .*recall_at_1/image_to_text \S+", line), line
        # the line stays short: the other logged metrics are in metrics.jsonl only
        assert "effective_rank" not in line and "uniformity" not in line
    assert set(EPOCH_METRICS) <= set(LOGGED_METRICS)
