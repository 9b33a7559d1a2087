"""Every post-hoc intervention on the bundled InfoNCE model against the bundled gap-closing twin (issue #27 §3).

    python scripts/reproduce_interventions.py            # prints the Markdown table of docs/reproduction.md

The interventions are fitted on the train split of the bundled digits and measured on its test split (359 images,
1,077 captions), the split every table of docs/reproduction.md uses; the twin (InfoNCE + L_ATP + L_CU, trained with
the same recipe) is measured on the same test split with the same metric definitions. Deterministic on CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gapdiag import api
from gapdiag.api import intervening

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "sample_data" / "digits" / "manifest.csv"
#: The rows of the table, in order (the summary's metrics: gap, its two W2 parts, pairs, retrieval, classes).
ROWS = ("modality_gap/image-text", "gap_w2_centroid/image-text", "gap_bures/image-text", "cos_tp/image-text",
        "recall_at_1/image_to_text", "recall_at_1/text_to_image", "recall_at_5/image_to_text",
        "recall_at_5/text_to_image", "hubness_skewness/image_to_text", "v_measure_class/joint",
        "zero_shot_accuracy/image")


def reproduce(cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The intervention result on InfoNCE (fit: train, measured: test) and the twin's values on the test split."""
    result = api.intervene(DIGITS, api.bundled_checkpoint("infonce"), fit_split="train", eval_split="test",
                           device="cpu", cache_dir=cache_dir, progress=False)
    twin = api.embed(DIGITS, api.bundled_checkpoint("gap_closing"), split="test", device="cpu",
                     cache_dir=cache_dir, progress=False)
    names = [name.split("/")[0] for name in result["metrics"] if not name.startswith(intervening.CENTROID_PART)]
    return {"result": result, "twin": intervening.evaluate(twin, dict.fromkeys(names), seed=0, device="cpu")}


def markdown(reproduced: dict[str, Any]) -> str:
    """The table: InfoNCE before, after each method, and the gap-closing twin."""
    result, twin = reproduced["result"], reproduced["twin"]
    methods = result["methods"]
    lines = ["| metric | InfoNCE | " + " | ".join(methods) + " | twin (ATP + CU) |",
             "| --- | ---: | " + " | ".join("---:" for _ in methods) + " | ---: |"]
    for row in ROWS:
        cells = [f"{result['before'][row]:.3f}"]
        cells += [f"{result['results'][m]['after'][row]:.3f}" for m in methods]
        lines.append(f"| `{row}` | " + " | ".join(cells) + f" | {twin[row]:.3f} |")
    summaries = [f"- {result['results'][m]['summary']}." for m in methods]
    return "\n".join([*lines, "", *summaries])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: the user cache)")
    args = parser.parse_args()
    print(markdown(reproduce(args.cache_dir)))


if __name__ == "__main__":
    main()
