"""Mutation testing of gapdiag's metrics on a seeded sample of mutants (cosmic-ray), module by module.

Usage (from the repository root, with gapdiag's dev environment; cosmic-ray is not a dependency)::

    pip install cosmic-ray==8.7.0
    python scripts/mutation_sample.py --sample 8 --seed 0 --out /tmp/mutation     # every module in MODULES
    python scripts/mutation_sample.py gapdiag/metrics/intrinsic.py --sample 0     # one module, every mutant

For each module it writes a cosmic-ray config (the module, the tests that exercise it, a timeout), runs
``cosmic-ray init``, marks the mutants of type annotations (never evaluated: equivalent) and every other mutant
outside a seeded sample of ``--sample`` as skipped (0 = all), runs
``cosmic-ray exec`` and prints the killed / survived counts and the diff of every survivor; ``--out`` keeps the
sessions (``cr-report <out>/<module>.sqlite`` or ``cr-html`` show them again). Each mutant runs the module's tests
in ``MODULES`` (a few seconds each, ``-x``): the map must follow the code when modules move.

cosmic-ray mutates the module **in place** and restores it after each mutant. The script refuses a module with
uncommitted changes and restores it from git at the end if a run was interrupted, so run it on a clean tree and
do not edit while it runs. CPU: one mutant at a time; ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import ast
import random
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COSMIC_RAY = str(Path(sys.executable).with_name("cosmic-ray"))  # installed beside this Python

#: Module -> the pytest arguments that exercise it (kept short: they run once per mutant; one -k per entry, since
#: pytest keeps only the last).
MODULES: dict[str, str] = {
    "gapdiag/metrics/bounds.py": "tests/test_metrics_degenerate.py",
    "gapdiag/metrics/intrinsic.py": "tests/test_metrics_diagnostics.py tests/test_metrics_degenerate.py "
                                    "-k 'twonn or two_nn or isoscore or identical or real_cause'",
    "gapdiag/metrics/similarity.py": "tests/test_metrics_diagnostics.py tests/test_metrics_degenerate.py "
                                     "-k 'cka or knn or overlap or two_model'",
    "gapdiag/metrics/clustering.py": "tests/test_metrics_clustering.py",
    "gapdiag/metrics/decomposition.py": "tests/test_metrics_diagnostics.py -k 'w2 or dims or mmd or compute_all'",
    "gapdiag/metrics/hubness.py": "tests/test_metrics_diagnostics.py -k hubness",
    "gapdiag/metrics/gap.py": "tests/test_metrics_geometry.py",
    "gapdiag/metrics/cone.py": "tests/test_metrics_geometry.py",
    "gapdiag/metrics/rank.py": "tests/test_metrics_geometry.py",
    "gapdiag/metrics/uniformity.py": "tests/test_metrics_geometry.py tests/test_metrics_engine.py "
                                     "-k 'uniform or w2 or bad_input or reference'",
}


def _config(module: str, tests: str, timeout: float) -> str:
    command = f"{shlex.quote(sys.executable)} -m pytest -x -q -p no:cacheprovider {tests}"
    return "\n".join([
        "[cosmic-ray]",
        f'module-path = "{module}"',
        f"timeout = {timeout}",
        "excluded-modules = []",
        f"test-command = {_toml_string(command)}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
    ])


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _annotation_spans(module: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``(start, end)`` (line, column) of every type annotation of a module that is never evaluated.

    gapdiag's modules start with ``from __future__ import annotations``: ``int | None`` mutated to ``int * None``
    changes nothing at run time (an equivalent mutant), so such mutants are left out before the sample is drawn.
    """
    tree = ast.parse((REPO / module).read_text(encoding="utf-8"))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not future:
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            found.append(node.returns)
        elif isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            found.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in found]


def _keep_sample(session: Path, module: str, sample: int, seed: int) -> tuple[int, int, int]:
    """Skip the mutants of annotations, then every other pending mutant outside a seeded sample of ``sample``;
    ``(all, in annotations, kept)``."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = _annotation_spans(module)

    def in_annotation(item: object) -> bool:
        return all(any(lo <= tuple(m.start_pos) < hi for lo, hi in spans) for m in item.mutations)  # type: ignore[attr-defined]

    with use_db(str(session)) as db:
        pending = list(db.pending_work_items)
        typed = [item.job_id for item in pending if in_annotation(item)]
        db.set_multiple_results(typed, WorkResult(output="mutates a type annotation, never evaluated",
                                                  worker_outcome=WorkerOutcome.SKIPPED))
        ids = sorted({item.job_id for item in pending} - set(typed))
        if sample <= 0 or sample >= len(ids):
            return len(pending), len(typed), len(ids)
        keep = set(random.Random(seed).sample(ids, sample))
        skip = [job for job in ids if job not in keep]
        db.set_multiple_results(skip, WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED))
        return len(pending), len(typed), len(keep)


def _summary(session: Path) -> tuple[int, int, list[str]]:
    """``(killed, survived, [diff of each survivor])`` of the mutants that ran."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed, survivors = 0, []
    with use_db(str(session)) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                where = ", ".join(f"{m.operator_name} at line {m.start_pos[0]}" for m in item.mutations)
                survivors.append(f"{where}\n{result.diff}")
            else:
                killed += 1
    return killed, len(survivors), survivors


def run_module(module: str, tests: str, *, sample: int, seed: int, out: Path, timeout: float) -> tuple[int, int]:
    """Mutation-test one module on a sample of its mutants; ``(killed, survived)``."""
    if subprocess.run(["git", "diff", "--quiet", "--", module], cwd=REPO, check=False).returncode != 0:
        raise SystemExit(f"{module} has uncommitted changes: commit them first (cosmic-ray mutates it in place)")
    stem = module.replace("/", ".").removesuffix(".py")
    config, session = out / f"{stem}.toml", out / f"{stem}.sqlite"
    config.write_text(_config(module, tests, timeout))
    session.unlink(missing_ok=True)
    try:
        subprocess.run([COSMIC_RAY, "init", str(config), str(session)], cwd=REPO, check=True)
        total, typed, kept = _keep_sample(session, module, sample, seed)
        print(f"{module}: {kept} of {total - typed} mutants ({typed} more only change annotations)", flush=True)
        subprocess.run([COSMIC_RAY, "exec", str(config), str(session)], cwd=REPO, check=True)
    finally:
        if subprocess.run(["git", "diff", "--quiet", "--", module], cwd=REPO, check=False).returncode != 0:
            subprocess.run(["git", "checkout", "--", module], cwd=REPO, check=True)
            print(f"{module}: restored from git (the run was interrupted)", flush=True)
    killed, survived, survivors = _summary(session)
    print(f"{module}: killed {killed}, survived {survived}", flush=True)
    for diff in survivors:
        print(f"--- survivor in {module}: {diff}", flush=True)
    return killed, survived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: {', '.join(MODULES)})")
    parser.add_argument("--sample", type=int, default=8, help="mutants per module, seeded (0 = every mutant)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant (a timeout counts as killed)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gapdiag-mutation",
                        help="sessions and configs go here (default: gapdiag-mutation in the temp dir)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"no tests listed for {unknown} in MODULES; add them there")
    totals = [0, 0]
    for module in args.modules or list(MODULES):
        killed, survived = run_module(module, MODULES[module], sample=args.sample, seed=args.seed, out=args.out,
                                      timeout=args.timeout)
        totals[0] += killed
        totals[1] += survived
    ran = sum(totals)
    print(f"total: killed {totals[0]} of {ran} ({100 * totals[0] / max(ran, 1):.1f} %), survived {totals[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
