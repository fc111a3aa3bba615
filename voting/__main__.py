"""`python -m voting vote|self-consistency|metrics|report|submit ...`: the parser and commands are voting/cli.py."""

from __future__ import annotations

import sys

from voting.cli import main

if __name__ == "__main__":
    sys.exit(main())
