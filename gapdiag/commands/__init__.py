"""CLI command groups that live outside gapdiag/cli.py (parsing and printing only).

Each module exposes ``register(app: typer.Typer) -> None``; gapdiag/cli.py calls it.
"""
