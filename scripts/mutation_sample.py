"""Mutation testing of gapdiag's metrics, gate and cache on a seeded, stratified sample of mutants (cosmic-ray).

Usage (from the repository root, with gapdiag's dev environment; cosmic-ray is not a dependency)::

    pip install cosmic-ray==8.7.0
    nice -n 10 python scripts/mutation_sample.py --sample 150 --seed 25 --out /tmp/mutation  # every module in MODULES
    python scripts/mutation_sample.py gapdiag/metrics/bounds.py --sample 0                   # one module, every mutant
    python scripts/mutation_sample.py --count                                                # only count the mutants

For each module it writes a cosmic-ray config (the module, the tests that exercise it, a timeout) and runs
``cosmic-ray init``; it marks the mutants of type annotations (never evaluated: equivalent) as skipped. The
sample of ``--sample`` mutants is then **stratified by module with proportional allocation**: each module gets
its share of the sample in proportion to its number of mutants (largest remainders, at least one per module that
has any), drawn with ``random.Random(f"{seed}:{module}")``, so the unweighted score estimates the score over
every mutant and a module's draw does not depend on which other modules run. Every other mutant is marked
skipped, ``cosmic-ray exec`` runs the rest, and the script prints killed / survived per module and the diff of
every survivor as it goes, then the total with its 95 % Wilson interval. ``--out`` keeps the sessions
(``cr-report <out>/<module>.sqlite`` or ``cr-html`` show them again). Each mutant runs the module's tests in
``MODULES`` (``-x``, a few seconds to a minute each): the map must follow the code when modules move.

cosmic-ray mutates the module **in place** and restores it after each mutant. The script refuses to start
with uncommitted changes under ``gapdiag/`` and restores a module from git at the end if a run was interrupted,
so run it on a clean tree and edit nothing while it runs. CPU: one mutant at a time; ``nice -n 10`` on a shared
machine.
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

#: Test files, in the order -x meets them (the most specific first), and what they cover.
_GEOMETRY = "tests/test_metrics_geometry.py tests/test_metrics_once.py"
_DIAGNOSTICS = "tests/test_metrics_diagnostics.py tests/test_metrics_degenerate.py"
_ENGINE = "tests/test_metrics_plan.py tests/test_metrics_engine.py"
_SCAN = "tests/test_cross_scan.py tests/test_tile_workers.py"
_CHECK = ("tests/test_check.py tests/test_compare.py tests/test_bootstrap.py tests/test_check_sweep.py "
          "tests/test_run8_store_gate.py tests/test_run9_gaps.py tests/test_run10_gaps.py tests/test_run11_gaps.py "
          "tests/test_run12_gaps.py")
_CACHE = ("tests/test_cache.py tests/test_cache_trust.py tests/test_cache_sweep.py tests/test_run8_store_gate.py "
          "tests/test_run9_gaps.py tests/test_run10_gaps.py tests/test_run11_gaps.py tests/test_run13_gaps.py")
#: Sizes of 3, 5, 7, 11 for the tiled, batched and chunked code (issue #25, after run 5).
_ODD = "tests/test_odd_sizes.py"
#: What the survivors of runs 6-13 in gapdiag/metrics showed untested, and the strip scan's cost (a few seconds).
_RUNS = ("tests/test_run6_gaps.py tests/test_run7_gaps.py tests/test_scan_cost.py tests/test_run8_gaps.py "
         "tests/test_run8_search.py tests/test_run9_gaps.py tests/test_run10_gaps.py tests/test_run11_gaps.py "
         "tests/test_run12_gaps.py tests/test_run13_gaps.py")
#: The sweep of every input check, its message and the documented counts (seconds): first where it reaches.
_SWEEP = "tests/test_bounds_sweep.py tests/test_bounds_edges.py"

#: Module -> the pytest arguments that exercise it (they run once per mutant with -x, so each list is the tests
#: that import the module or reach it through its callers, not the whole suite; docs/reliability.md says how a
#: survivor was then run against the wider suite before it was called one).
MODULES: dict[str, str] = {
    "gapdiag/metrics/__init__.py": "tests/test_metrics_once.py",
    "gapdiag/metrics/arithmetic.py": f"{_SWEEP} tests/test_metrics_zeroshot.py tests/test_metrics_sampling.py {_ENGINE}",
    "gapdiag/metrics/blocked.py": f"{_SWEEP} {_GEOMETRY} {_SCAN} tests/test_metrics_engine.py {_ODD}",
    "gapdiag/metrics/bounds.py": "tests/test_metrics_degenerate.py tests/test_metrics_once.py",
    "gapdiag/metrics/clustering.py": f"{_SWEEP} tests/test_metrics_clustering.py tests/test_documented_samples.py {_RUNS} "
                                     "tests/test_metrics_degenerate.py",
    "gapdiag/metrics/cone.py": f"{_SWEEP} tests/test_metrics_conformity.py {_GEOMETRY} "
                              "tests/test_metrics_raw_geometry.py",
    "gapdiag/metrics/cross.py": f"{_SWEEP} {_SCAN} tests/test_metrics_retrieval.py tests/test_metrics_engine.py {_ODD}",
    "gapdiag/metrics/decomposition.py": f"{_SWEEP} {_DIAGNOSTICS}",
    "gapdiag/metrics/engine.py": f"{_SWEEP} {_ENGINE}",
    "gapdiag/metrics/gap.py": f"{_GEOMETRY} tests/test_metrics_engine.py",
    "gapdiag/metrics/hubness.py": f"{_SWEEP} {_DIAGNOSTICS} {_RUNS}",
    "gapdiag/metrics/intrinsic.py": f"{_SWEEP} {_DIAGNOSTICS}",
    "gapdiag/metrics/linalg.py": f"{_GEOMETRY} tests/test_metrics_diagnostics.py tests/test_tile_workers.py",
    "gapdiag/metrics/passes.py": f"{_ENGINE} {_ODD}",
    "gapdiag/metrics/quadratic.py": f"{_ENGINE} tests/test_torch_passes.py tests/test_documented_samples.py",
    "gapdiag/metrics/rank.py": f"{_GEOMETRY} tests/test_metrics_engine.py",
    "gapdiag/metrics/raw.py": f"{_SWEEP} tests/test_metrics_raw_geometry.py tests/test_metrics_engine.py",
    "gapdiag/metrics/registry.py": f"tests/test_metrics_registry.py {_ENGINE} tests/test_check.py",
    "gapdiag/metrics/retrieval.py": f"{_SWEEP} tests/test_metrics_retrieval.py {_SCAN} {_ODD} {_RUNS}",
    "gapdiag/metrics/rounding.py": f"tests/test_metrics_once.py {_SCAN} tests/test_metrics_degenerate.py",
    "gapdiag/metrics/running_topk.py": _SCAN,
    "gapdiag/metrics/sampling.py": "tests/test_metrics_sampling.py tests/test_metrics_engine.py "
                                  f"tests/test_cli.py::test_sample_floor_is_one_check_for_every_command {_RUNS}",
    "gapdiag/metrics/search_index.py": f"{_SWEEP} tests/test_metrics_retrieval.py tests/test_metrics_once.py {_ODD} {_RUNS}",
    "gapdiag/metrics/similarity.py": f"{_SWEEP} {_DIAGNOSTICS} tests/test_compare_models.py {_RUNS}",
    "gapdiag/metrics/strip_scan.py": f"{_SWEEP} {_SCAN} tests/test_metrics_once.py {_RUNS}",
    "gapdiag/metrics/tile_workers.py": "tests/test_tile_workers.py tests/test_cross_scan.py",
    "gapdiag/metrics/torch_passes.py": f"tests/test_torch_passes.py tests/test_metrics_plan.py {_ODD} {_RUNS}",
    "gapdiag/metrics/uniformity.py": f"{_SWEEP} {_GEOMETRY} tests/test_metrics_engine.py",
    "gapdiag/metrics/validation.py": f"{_SWEEP} {_GEOMETRY} tests/test_metrics_diagnostics.py tests/test_metrics_clustering.py "
                                    "tests/test_metrics_retrieval.py",
    "gapdiag/metrics/zeroshot.py": f"{_SWEEP} tests/test_metrics_zeroshot.py tests/test_metrics_engine.py",
    **{f"gapdiag/check/{name}.py": _CHECK
       for name in ("__init__", "bootstrap", "config", "evaluate", "provenance", "render", "rules")},
    "gapdiag/check/compare.py": f"{_CHECK} {_RUNS}",
    **{f"gapdiag/cache/{name}.py": _CACHE
       for name in ("__init__", "entry", "files", "integrity", "keys", "store", "writer")},
    "gapdiag/cache/derived.py": "tests/test_derived.py tests/test_cache.py",
}
#: Every module of gapdiag/metrics also runs those files (each survivor's test is where its kind was missing).
MODULES.update({m: f"{t} {_RUNS}" for m, t in MODULES.items() if m.startswith("gapdiag/metrics/") and _RUNS not in t})


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


def _mutant_key(item: object) -> tuple:
    """A mutant's place and operator: stable across ``cosmic-ray init`` runs (job ids are fresh uuids)."""
    return tuple((str(m.module_path), m.operator_name, m.occurrence, tuple(m.start_pos))  # type: ignore[attr-defined]
                 for m in item.mutations)  # type: ignore[attr-defined]


def _init_module(module: str, tests: str, *, out: Path, timeout: float) -> tuple[Path, Path, list, int]:
    """``cosmic-ray init`` one module and skip its mutants of annotations; ``(config, session, the other mutants
    in a stable order, how many mutate annotations)``."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    stem = module.replace("/", ".").removesuffix(".py")
    config, session = out / f"{stem}.toml", out / f"{stem}.sqlite"
    config.write_text(_config(module, tests, timeout))
    session.unlink(missing_ok=True)
    subprocess.run([COSMIC_RAY, "init", str(config), str(session)], cwd=REPO, check=True)
    spans = _annotation_spans(module)

    def in_annotation(item: object) -> bool:
        return all(any(lo <= tuple(m.start_pos) < hi for lo, hi in spans) for m in item.mutations)  # type: ignore[attr-defined]

    with use_db(str(session)) as db:
        pending = list(db.pending_work_items)
        typed = [item.job_id for item in pending if in_annotation(item)]
        db.set_multiple_results(typed, WorkResult(output="mutates a type annotation, never evaluated",
                                                  worker_outcome=WorkerOutcome.SKIPPED))
    skipped = set(typed)
    rest = sorted((item for item in pending if item.job_id not in skipped), key=_mutant_key)
    return config, session, rest, len(typed)


def allocate(sizes: dict[str, int], sample: int) -> dict[str, int]:
    """Proportional allocation of ``sample`` draws to strata of ``sizes``: largest remainders (ties by name), at
    least one draw per non-empty stratum, never more than a stratum holds; ``sample <= 0`` takes everything."""
    if sample <= 0 or sample >= sum(sizes.values()):
        return dict(sizes)
    total = sum(sizes.values())
    quota = {m: sample * n / total for m, n in sizes.items()}
    share = {m: min(n, max(1 if n else 0, int(quota[m]))) for m, n in sizes.items()}
    order = sorted(sizes, key=lambda m: (-(quota[m] - int(quota[m])), m))
    while sum(share.values()) < sample:
        grew = False
        for m in order:
            if sum(share.values()) < sample and share[m] < sizes[m]:
                share[m] += 1
                grew = True
        if not grew:
            break
    return share


def _skip_outside_sample(session: Path, rest: list, keep: int, seed: str) -> None:
    """Mark every mutant of ``rest`` outside a seeded draw of ``keep`` of them as skipped."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    chosen = set(random.Random(seed).sample(range(len(rest)), keep))
    skip = [item.job_id for i, item in enumerate(rest) if i not in chosen]
    with use_db(str(session)) as db:
        db.set_multiple_results(skip, WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED))


def _summary(session: Path) -> tuple[int, int, list[str]]:
    """``(killed, survived, [diff of each survivor])`` of the mutants that ran (a timeout or a mutant that
    cannot be imported counts as killed, as cosmic-ray counts it)."""
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


def wilson(killed: int, ran: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``killed / ran`` (Wilson 1927); ``(0, 1)`` when nothing ran."""
    if ran == 0:
        return 0.0, 1.0
    p = killed / ran
    centre = (p + z * z / (2 * ran)) / (1 + z * z / ran)
    half = z * ((p * (1 - p) / ran + z * z / (4 * ran * ran)) ** 0.5) / (1 + z * z / ran)
    return max(0.0, centre - half), min(1.0, centre + half)


def _exec_module(module: str, config: Path, session: Path) -> tuple[int, int]:
    """``cosmic-ray exec`` one module's session, restore the module from git if the run was cut short, print
    the survivors; ``(killed, survived)``."""
    try:
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
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: every module in MODULES)")
    parser.add_argument("--sample", type=int, default=150, help="mutants in all, stratified by module (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant (a timeout counts as killed)")
    parser.add_argument("--count", action="store_true", help="only count each module's mutants and the allocation")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gapdiag-mutation",
                        help="sessions and configs go here (default: gapdiag-mutation in the temp dir)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"no tests listed for {unknown} in MODULES; add them there")
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "gapdiag"], cwd=REPO, check=False).returncode:
        raise SystemExit("gapdiag/ has uncommitted changes: commit them first (cosmic-ray mutates it in place)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    sessions = {m: _init_module(m, MODULES[m], out=args.out, timeout=args.timeout) for m in modules}
    share = allocate({m: len(s[2]) for m, s in sessions.items()}, args.sample)
    for m, (_, _, rest, typed) in sessions.items():
        print(f"{m}: {share[m]} of {len(rest)} mutants ({typed} more only change annotations)", flush=True)
    print(f"at {commit}: {sum(share.values())} of {sum(len(s[2]) for s in sessions.values())} mutants", flush=True)
    if args.count:
        return 0
    killed = survived = 0
    for m, (config, session, rest, _) in sessions.items():
        _skip_outside_sample(session, rest, share[m], f"{args.seed}:{m}")
        k, s = _exec_module(m, config, session)
        killed, survived = killed + k, survived + s
    ran = killed + survived
    lo, hi = wilson(killed, ran)
    print(f"total at {commit}: killed {killed} of {ran} ({100 * killed / max(ran, 1):.1f} %, 95 % Wilson interval "
          f"{100 * lo:.1f}-{100 * hi:.1f} %), survived {survived}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
