"""`python -m adapters ADAPTER --train FILE ... --name NAME`: the parser is adapters/cli.py."""

from __future__ import annotations

import sys

from adapters.cli import main

if __name__ == "__main__":
    sys.exit(main())
