"""``python -m fmpretrain.cli ...``: the same as ``fmpretrain ...``."""

from fmpretrain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
