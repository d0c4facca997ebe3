"""Run the benchmark harness from a checkout: ``python benchmarks/run.py [args]``.

The same as ``probpipe bench [args]``; the harness itself ships with probpipe
(``probpipe.benchmarks``) so it also works from an install. Results go to
``benchmarks/results/`` by default; ``--help`` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from probpipe.benchmarks import main
except ImportError:  # a checkout without an install: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from probpipe.benchmarks import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
