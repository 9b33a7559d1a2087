"""The Monitor's tracker adapters, tested offline with the real libraries (issue #28 §2): TensorBoard event files
read back, MLflow's file store, W&B offline mode. Each test skips, saying so, where its extra is not installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gapdiag.errors import InputError
from gapdiag.training.loggers import log_mlflow, log_tensorboard, log_wandb, scalars
from gapdiag.training.monitor import Monitor


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    monitor = Monitor(["modality_gap", "cos_tp", "recall_at_1"], sample=8)
    monitor.update(torch.from_numpy(rng.normal(size=(12, 6))), torch.from_numpy(rng.normal(size=(12, 6))))
    return monitor.compute()


def test_scalars_keeps_the_finite_numbers_under_a_prefix():
    assert scalars({"a/b": 1, "c": 2.5, "nan": float("nan"), "flag": True, "text": "x"}, "g/") == \
        {"g/a/b": 1.0, "g/c": 2.5}


def test_tensorboard_event_files_read_back(result, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "a")) as writer:
        log_tensorboard(result, writer, step=3)
        log_tensorboard({"modality_gap/image-text": 0.25}, writer, step=4)
    log_tensorboard(result, tmp_path / "b", step=7)  # a folder: the adapter opens and closes its own writer
    for folder, step in (("a", 3), ("b", 7)):
        events = EventAccumulator(str(tmp_path / folder))
        events.Reload()
        assert set(events.Tags()["scalars"]) == {f"gapdiag/{k}" for k in scalars(result)}
        gap = events.Scalars("gapdiag/modality_gap/image-text")
        assert gap[0].step == step and gap[0].value == pytest.approx(result["modality_gap/image-text"], rel=1e-6)
    assert [(e.step, e.value) for e in events.Scalars("gapdiag/cos_tp/image-text")] == \
        [(7, pytest.approx(result["cos_tp/image-text"], rel=1e-6))]


def test_mlflow_file_store(result, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    # MLflow 3 keeps the file store in maintenance and asks for this opt-in; a database store needs SQLAlchemy,
    # which mlflow-skinny leaves out.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    try:
        with mlflow.start_run() as run:
            log_mlflow(result, step=2)
            log_mlflow({"modality_gap/image-text": 0.5}, step=3, prefix="")
        log_mlflow(result, step=9, run_id=run.info.run_id, prefix="eval/")
        client = mlflow.MlflowClient()
        history = client.get_metric_history(run.info.run_id, "modality_gap/image-text")
        assert [(m.step, m.value) for m in history] == [(2, pytest.approx(result["modality_gap/image-text"])),
                                                        (3, 0.5)]
        (later,) = client.get_metric_history(run.info.run_id, "eval/recall_at_1/image_to_text")
        assert later.step == 9 and later.value == pytest.approx(result["recall_at_1/image_to_text"])
    finally:
        mlflow.set_tracking_uri(None)


def test_wandb_offline_run_holds_the_values(result, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="gapdiag-test", reinit=True)
    try:
        log_wandb(result, step=1)
        log_wandb(result, step=2, run=run, prefix="eval/")
    finally:
        run.finish()
        wandb.teardown()  # waits for wandb-core to write the run's file
    rows = _offline_history(tmp_path)
    assert rows[0]["_step"] == 1 and rows[0]["modality_gap/image-text"] == pytest.approx(
        result["modality_gap/image-text"])
    assert rows[1]["_step"] == 2 and rows[1]["eval/cos_tp/image-text"] == pytest.approx(result["cos_tp/image-text"])


def _offline_history(root):
    """The history rows of the one offline run under ``root``, read from its .wandb transaction log: a 7-byte
    ``:W&B`` header, then LevelDB log records (7-byte header: CRC, length, type FULL/FIRST/MIDDLE/LAST) in 32 KiB
    blocks, each record a ``wandb_internal_pb2.Record`` (wandb ships no reader of its own)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = root.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, part, rows = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        part, pos = part + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            part = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_without_a_run_is_a_one_line_error(result):
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
    assert wandb.run is None
    with pytest.raises(InputError, match="no W&B run is active"):
        log_wandb(result, step=0)
