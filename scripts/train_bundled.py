"""Train the two bundled tiny checkpoints on the bundled sample data (CPU, minutes, fixed seed).

    python scripts/train_bundled.py                      # writes sample_data/checkpoints/{infonce,gap_closing}.safetensors

Both runs share everything (architecture gapdiag-tiny-vit, seed, data order, optimiser, epochs) except the
loss: plain bidirectional InfoNCE vs InfoNCE + λ1·L_ATP + λ2·L_CU with λ1 = λ2 = 1 (Grassucci et al. 2026).
Training data: the train splits of sample_data/digits and sample_data/shapes; per-epoch metrics on the digits
test split go to <work>/<name>/metrics.jsonl. Weights are exported as float16 .safetensors (a few MB) with the
model config in the metadata, so `gapdiag measure -m sample_data/checkpoints/gap_closing.safetensors` works.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gapdiag.api import train
from gapdiag.data.manifest import read_manifest
from gapdiag.data.ops import concat_datasets
from gapdiag.data.sample import sample_data_dir

RUNS = {"infonce": ("infonce", {}), "gap_closing": ("atp_cu", {"lambda_atp": 1.0, "lambda_cu": 1.0})}
#: The recipe of the shipped checkpoints (tests/test_reproduction.py runs a shortened version of it).
RECIPE = {"model": "gapdiag-tiny-vit", "epochs": 25, "batch_size": 128, "lr": 2e-3, "seed": 0}


def training_data(root: Path | None = None):
    root = root or sample_data_dir()
    parts = [read_manifest(root / "digits" / "manifest.csv", split="train"),
             read_manifest(root / "shapes" / "manifest.csv", split="train")]
    return concat_datasets(parts, name="digits+shapes")


def train_bundled(work: Path, out: Path, *, epochs: int, runs=tuple(RUNS), progress: bool = True) -> dict[str, Path]:
    """Train the named runs into ``work`` and copy the exported weights to ``out/<name>.safetensors``."""
    data = training_data()
    eval_data = read_manifest(sample_data_dir() / "digits" / "manifest.csv", split="test")
    written = {}
    for name in runs:
        loss, weights = RUNS[name]
        run_dir = work / name
        if run_dir.exists():
            shutil.rmtree(run_dir)  # the shipped weights come from a fresh run, never a resumed one
        recipe = {**RECIPE, "epochs": epochs}
        result = train(data, recipe.pop("model"), out_dir=run_dir, loss=loss, loss_weights=weights,
                       eval_data=eval_data, export_dtype="float16", progress=progress, **recipe)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{name}.safetensors"
        shutil.copyfile(result.model_path, target)
        written[name] = target
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--work", type=Path, default=Path("runs/bundled"))
    parser.add_argument("--out", type=Path, default=None, help="default: sample_data/checkpoints")
    args = parser.parse_args()
    for name, path in train_bundled(args.work, args.out or sample_data_dir() / "checkpoints", epochs=args.epochs).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
