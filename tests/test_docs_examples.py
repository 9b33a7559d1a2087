"""Every ``gapdiag ...`` command example in README.md and docs/ runs as written (issue #30 §5).

Each fenced code block of README.md and docs/*.md is read; every command in it that starts with ``gapdiag`` (after
a ``$``, a YAML ``-`` or ``run:``, across ``\\`` continuations and ``&&``, up to a pipe or a redirection) is run
in-process, in the order of its document, in a folder of its own with its own cache, where the files the examples
name exist: small copies of the bundled digits (``captions.csv``, ``eval.csv``, ...), copies of the bundled
checkpoints under the names the examples give them (``released.safetensors``, ``epoch1.pt``, ...), reports
measured from them (``baseline.json``, ...) and precomputed vectors (``embeddings.npz``, ...). Each must exit 0 (a
``check`` 0 or 1: a regression found is what it is for).

An example that cannot run offline on a CPU matches an entry of :data:`NOT_RUN`, which says why; any other example
is run, so an example added to the docs (another engineer's command too) is run from the day it is merged, and a
failure names ``file:line`` and the command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import gapdiag
from data_fixtures import digits_manifest

from gapdiag.cli import run

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Examples that cannot run offline on a CPU, and why: (pattern searched in the command, reason).
NOT_RUN: list[tuple[str, str]] = [
    (r"(-p|--pretrained) (openai|laion\S*)\b", "downloads open_clip's pretrained weights (needs the network)"),
    (r"cache (rm|verify) 3f2a9c", "3f2a9c stands for a key of the reader's own cache"),
    (r"--epochs 30\b", "trains 30 epochs (many minutes on a CPU); tests/test_train.py runs gapdiag train"),
    (r"(runs/atp/checkpoints/|logs/run/checkpoints/|^track (runs|logs)/)",
     "names the epoch checkpoints of a training run the reader has made; tests/test_track.py and "
     "tests/test_models_training_output.py run these on real gapdiag train and open_clip runs"),
    (r"--checkpoint-every 2 --out runs/",
     "trains 10 epochs per loss (minutes on a CPU); test_track.py::test_track_reads_the_epochs_gapdiag_train_saves "
     "runs gapdiag train then gapdiag track"),
    (r"--track (track|infonce|atp)\.json", "draws the track record of the training runs above, which are not run here"),
    (r"--interventions interventions\.json",
     "draws the result of the ViT-B-32 example above, which needs the network; docs/cli.md's own example runs"),
    (r"^--(install|show)-completion\b",
     "writes the reader's shell start-up files; tests/test_completion.py runs it in a scratch home"),
]
#: Files in the examples' folder that stand for the reader's own: data (copies of a small digits manifest).
DATA_FILES = ("captions.csv", "eval.csv", "val.csv", "data.csv", "photos.csv", "eval/manifest.csv")
#: Checkpoints the examples name, as copies of the bundled ones (``.pt``: a state dict with the config beside it).
CHECKPOINTS = {
    "released.safetensors": "infonce", "models/released.safetensors": "infonce", "new.safetensors": "gap_closing",
    "candidate.safetensors": "gap_closing", "models/candidate.safetensors": "gap_closing",
    "runs/x/model.safetensors": "gap_closing", "runs/atp/model.safetensors": "gap_closing",
    "released.pt": "infonce", "candidate.pt": "gap_closing", "new.pt": "gap_closing", "epoch1.pt": "infonce",
    "epoch2.pt": "gap_closing", "epoch5.pt": "gap_closing", "epoch10.pt": "gap_closing",
}
#: Reports the examples read, measured on ``eval.csv`` with these checkpoints.
REPORTS = {"baseline.json": "released.safetensors", "candidate.json": "candidate.safetensors",
           "new.json": "candidate.safetensors", "base.json": "released.safetensors", "a.json": "new.safetensors",
           "b.json": "candidate.safetensors", "epoch1.json": "released.safetensors",
           "epoch5.json": "candidate.safetensors"}
#: Precomputed vectors the examples read, of ``eval.csv`` by these checkpoints.
VECTORS = {"embeddings.npz": "released.safetensors", "released.npz": "released.safetensors",
           "candidate.npz": "candidate.safetensors"}
#: The variables docs/ci.md's jobs set.
ENVIRONMENT = {"BASELINE_MODEL": "models/released.safetensors", "CANDIDATE_MODEL": "models/candidate.safetensors",
               "EVAL_DATA": "eval/manifest.csv"}
#: Exit codes an example may end with: ``check`` says 1 when it finds a regression, which is what it is for.
ALLOWED_EXIT = {"check": (0, 1)}
SEPARATORS = {"&&", "||", "|", ";"}


@dataclass
class Example:
    """One ``gapdiag`` command of a document: where it is and its arguments after ``gapdiag``."""

    doc: str
    line: int
    args: list[str]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}: gapdiag {shlex.join(self.args)}"

    def not_run(self) -> str | None:
        """The reason this example is not run (an entry of :data:`NOT_RUN`), or None."""
        text = shlex.join(self.args)
        return next((reason for pattern, reason in NOT_RUN if re.search(pattern, text)), None)


def _commands(text: str) -> list[list[str]]:
    """The ``gapdiag`` commands of one shell line (comments, pipes, redirections and ``$(...)`` left out)."""
    line = re.sub(r"^\s*(\$\s+|-\s+|run:\s+)*", "", text)
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # not shell (a YAML mapping, an unbalanced quote in prose)
        return []
    commands, current = [], []
    for token in [*tokens, "&&"]:
        if token in SEPARATORS or token.startswith((">", "2>")):
            if current and current[0] == "gapdiag":
                commands.append(current[1:])
            current = [] if token in SEPARATORS else ["stop"]
        elif current != ["stop"]:
            current.append(os.path.expandvars(token) if "$" in token else token)
    return [c for c in commands if "stop" not in c]


def examples(doc: Path) -> list[Example]:
    """Every ``gapdiag`` command in the fenced code blocks of ``doc``, in order."""
    found: list[Example] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    in_block = False
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            in_block = not in_block
            i += 1
            continue
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        if in_block and re.search(r"(^|\s|\$\s|&&\s)gapdiag\s", text):
            with _environment():
                found += [Example(str(doc.relative_to(ROOT)), start + 1, args) for args in _commands(text)]
        i += 1
    return found


class _environment:
    """docs/ci.md's variables set while its commands are read (``$EVAL_DATA`` -> ``eval/manifest.csv``)."""

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in ENVIRONMENT}
        os.environ.update(ENVIRONMENT)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _prepare(folder: Path) -> None:
    """The files the examples name, in ``folder`` (see the module docstring)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gapdiag.api import bundled_checkpoint

    (folder / "sample_data").symlink_to(ROOT / "sample_data")
    for name in DATA_FILES:
        path = folder / name
        digits_manifest(path.parent, n=12, name=path.name)
    for name, bundled in CHECKPOINTS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = bundled_checkpoint(bundled)
        if path.suffix == ".pt":
            torch.save(load_file(source), path)
            with safe_open(str(source), framework="pt") as f:
                (path.parent / "open_clip_config.json").write_text(f.metadata()["open_clip_config"])
        else:
            shutil.copy(source, path)
    for name, model in REPORTS.items():
        # The CLI's output is pytest's to capture here (a module fixture has no capsys): it shows on a failure.
        code = run([str(a) for a in ("measure", "-m", folder / model, "-d", folder / "eval.csv", "-q", "--out",
                                     folder / name)])
        assert code == 0, f"gapdiag measure for {name} exited {code}"
    import gapdiag as gd

    for name, model in VECTORS.items():
        es = gd.embed(folder / "eval.csv", folder / model, device="cpu", progress=False)
        arrays = {m: np.asarray(v) for m, v in es.vectors.items()}
        arrays |= {f"sample_index_{m}": np.asarray(idx) for m, idx in es.sample_index.items()}
        np.savez(folder / name, **arrays)


def _run(example: Example, capsys: pytest.CaptureFixture[str]) -> str | None:
    """Run one example; the failure, in one line naming where it is, or None."""
    code, _, err = gapdiag(capsys, *example.args)
    allowed = ALLOWED_EXIT.get(example.args[0] if example.args else "", (0,))
    if code in allowed:
        return None
    last = (err.strip().splitlines() or ["(nothing on stderr)"])[-1]
    return f"{example.where}: exit {code}: {last}"


def _examples_environment(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("GAPDIAG_CACHE_DIR", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples' files (``work/``) and the cache their preparation filled (``cache/``), made once per module.

    Every document's test starts from a copy of both: the same files and the same cache entries as if it had
    prepared them itself (what each test did before, 8 measures and 3 embeds apiece), and no test sees what
    another one's examples wrote.
    """
    base = tmp_path_factory.mktemp("docs-examples")
    (base / "work").mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _examples_environment(monkeypatch, base / "cache")
        _prepare(base / "work")
    return base


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in DOCS if examples(d)], ids=lambda d: d.name)
def test_every_command_example_runs(doc: Path, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "work"
    shutil.copytree(prepared / "work", folder, symlinks=True)
    shutil.copytree(prepared / "cache", tmp_path / "cache", symlinks=True)
    _examples_environment(monkeypatch, tmp_path / "cache")
    monkeypatch.chdir(folder)
    failures = [failure for example in examples(doc) if example.not_run() is None
                for failure in [_run(example, capsys)] if failure]
    assert failures == [], "\n".join(failures)


def test_the_examples_are_found() -> None:
    # A parser that finds nothing would make the test above pass vacuously.
    found = {e.doc: e for d in DOCS for e in examples(d)}
    assert {"README.md", "docs/cli.md", "docs/check.md", "docs/ci.md", "docs/plotting.md"} <= set(found)
    cli = [e.args for e in examples(ROOT / "docs" / "cli.md")]
    assert ["measure"] in cli and ["cache", "ls", "--json"] in cli
    ci = [e.args for e in examples(ROOT / "docs" / "ci.md")]
    assert any("eval/manifest.csv" in args for args in ci)  # $EVAL_DATA read as the job sets it


def test_every_not_run_entry_still_matches_an_example() -> None:
    texts = [shlex.join(e.args) for d in DOCS for e in examples(d)]
    stale = [pattern for pattern, _ in NOT_RUN if not any(re.search(pattern, t) for t in texts)]
    assert stale == [], f"NOT_RUN entries that match no example any more: {stale}"


def test_the_parser_reads_shell_lines() -> None:
    assert _commands("gapdiag shift --out s.json && gapdiag plot --shift s.json") == [
        ["shift", "--out", "s.json"], ["plot", "--shift", "s.json"]]
    assert _commands("$ gapdiag cache ls | grep x   # comment") == [["cache", "ls"]]
    assert _commands("gapdiag measure --json > out.json") == [["measure", "--json"]]
    assert _commands("du -sh $(gapdiag cache dir)") == []
    assert _commands("- run: gapdiag measure -q") == [["measure", "-q"]]


def test_readme_sample_is_what_measure_prints(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("`gapdiag measure` with no arguments"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    code, out, err = gapdiag(capsys, "measure")
    assert code == 0, err

    def cells(lines: list[str]) -> list[list[str]]:
        return [[c.strip() for c in line.strip().strip("│").split("│")] for line in lines if line.startswith("│")]

    printed = cells(out.splitlines())
    shown = cells(block.splitlines())
    assert shown and all(row in printed for row in shown), (shown, printed)
    (total,) = re.findall(r"\.\.\. (\d+) rows in all", block)
    assert int(total) == len(printed)
