"""Run the benchmarks: every bench/bench_*.py module that defines main().

python -m bench            # all of them
python -m bench bus api    # only bench_bus.py and bench_api.py
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench.machine import describe_machine


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(
        info.name for info in pkgutil.iter_modules([str(here)]) if info.name.startswith("bench_")
    )
    wanted = {f"bench_{name}" for name in argv}
    if wanted:
        names = [name for name in names if name in wanted]
    print(describe_machine())
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "main"):
            print(f"\n=== {name} ===", flush=True)
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
