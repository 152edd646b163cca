from __future__ import annotations

import argparse
import json
import sys

from edgeship.commands import command, load_cfg


@command("compress", help="compress the model before export ([compress] steps: prune, low_rank, distill, weights4)",
         order=5, example="edgeship compress && edgeship export --from compressed")
class Compress:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the compressed manifest as JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.compress.stage import compress, format_table

        cfg = load_cfg(args)
        manifest = compress(cfg, on_event=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(manifest, indent=2) if args.json else format_table(manifest))
        return 0
