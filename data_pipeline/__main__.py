"""``python -m data_pipeline --config ... key=value ...``: the same as ``fmpretrain featurize``
(the entry point ``ray job submit`` and the sbatch script run); it hands over to the CLI."""

from fmpretrain.cli import main

if __name__ == "__main__":
    import sys

    raise SystemExit(main(["featurize", *sys.argv[1:]]))
