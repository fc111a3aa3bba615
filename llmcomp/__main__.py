"""`python -m llmcomp SUBCOMMAND ...`: the front door's dispatch is llmcomp/cli.py."""

from __future__ import annotations

import sys

from llmcomp.cli import main

if __name__ == "__main__":
    sys.exit(main())
