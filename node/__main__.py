"""`python -m node --config FILE`: run one member state's node until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from ._app import StartError, run_node
from ._config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node", description="Run one Tamga node.")
    parser.add_argument("--config", required=True, help="the node's TOML configuration file")
    args = parser.parse_args(argv)
    try:
        return run_node(args.config)
    except (ConfigError, StartError) as exc:
        print(f"tamga node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
