"""`python -m pipeline train|qlora|predict|export ...`: the parser is pipeline/cli.py."""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
