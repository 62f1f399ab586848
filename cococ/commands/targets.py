"""List the targets cococ builds for, with what the passes and backends read from them."""
from __future__ import annotations

import argparse
import json

from cococ.ir.target import all_targets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def run(args: argparse.Namespace) -> int:
    targets = all_targets()
    if args.json:
        print(json.dumps([t.facts() for t in targets], indent=2))
        return 0
    for t in targets:
        lanes = ", ".join(f"{k}: {v}" for k, v in t.lanes.items())
        print(f"{t.name:8} parallelism {t.parallelism:9} SIMD lanes {{{lanes}}}")
        if t.is_mcu:
            print(f"{'':8} flash {t.flash // 1024} KiB, SRAM {t.sram // 1024} KiB (--target-opt flash=..,sram=..)")
        print(f"{'':8} {t.description}")
        print(f"{'':8} tvm target {json.dumps(t.tvm)}")
    return 0
