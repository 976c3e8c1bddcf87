"""``python -m fmpretrain.train --config ... key=value``: pre-training under launchers."""

from fmpretrain.cli import main

if __name__ == "__main__":
    import sys

    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
