"""`nonn-edge` (or `python -m nonn.edge`) node|gateway|classify|certs ...: works with only nonn/edge installed."""

from __future__ import annotations

import argparse
import os
import sys

from nonn.edge.commands import register


def main(argv: list[str] | None = None) -> int:
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    prog = "nonn-edge" if script.startswith("nonn-edge") else "python -m nonn.edge"
    parser = argparse.ArgumentParser(prog=prog,
                                     description="NoNN edge runtime: student nodes, gateway, client, certificates.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
