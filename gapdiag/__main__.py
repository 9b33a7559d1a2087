"""``python -m gapdiag`` (and ``torchrun --nproc-per-node N -m gapdiag embed ...``)."""

from gapdiag.cli import main

if __name__ == "__main__":
    main()
