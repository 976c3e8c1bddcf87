"""``python -m data_pipeline --config ... key=value ...`` (the same as ``fmpretrain featurize``)."""

from __future__ import annotations

import argparse
import sys

from data_pipeline.cli import DESCRIPTION, add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipeline", description=DESCRIPTION)
    add_arguments(parser)
    try:
        return run(parser.parse_args())
    except (ValueError, FileNotFoundError) as err:
        print(f"featurize: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
