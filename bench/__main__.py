"""``python -m bench`` (``make bench``): list the benchmarks, or run one (or all) of them.

    python -m bench                      # the list, with what each measures
    python -m bench <name> [options...]  # one benchmark; options go to it (``--help`` for its own)
    python -m bench all                  # each in turn, with its defaults (several minutes)
"""

from __future__ import annotations

import importlib
import runpy
import sys
from collections.abc import Sequence

__all__ = ["BENCHMARKS", "main"]

# The benchmarks of bench/README.md; the other modules here are their helpers.
BENCHMARKS = (
    "ingress",
    "inventory",
    "outbox_relay",
    "channel_notifier",
    "flash_sale",
    "console",
    "atomic_batches",
    "pull",
)


def _summary(name: str) -> str:
    doc = importlib.import_module(f"bench.{name}").__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _run(name: str, argv: Sequence[str]) -> int:
    sys.argv = [f"python -m bench.{name}", *argv]
    try:
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "list"):
        print(__doc__.strip().split("\n\n")[1] if args else "Benchmarks (python -m bench <name> [--help]):")
        for name in BENCHMARKS:
            print(f"  {name:<17} {_summary(name)}")
        return 0
    name, rest = args[0].replace("-", "_"), args[1:]
    if name == "all":
        failed = [n for n in BENCHMARKS if _run(n, rest) != 0]
        if failed:
            print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    if name not in BENCHMARKS:
        print(f"bench: no benchmark {args[0]!r}; choose one of: {', '.join(BENCHMARKS)}, all", file=sys.stderr)
        return 2
    return _run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
