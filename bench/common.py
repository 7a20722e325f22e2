"""The command line the bench scripts share (run as `python bench/<script>.py`, so this folder is on the import path):

    parser = bench_parser(__doc__)                        # or bench_parser(__doc__, shipped="the models ...")
    parser.add_argument("--steps", type=int, default=50)  # the script's own options
    args, device, out = parse_bench_args(parser)          # adds --device and --out, parses, makes the folder
"""
import argparse
from pathlib import Path

from course_lib.core import get_device
from course_lib.garments import PATTERNS


def bench_parser(doc: str, shipped: str | None = None) -> argparse.ArgumentParser:
    """A parser whose --help is the script's docstring `doc`, laid out as written (its usage lines and lists). With
    `shipped` (what --shipped measures), also the choice `[--shipped | --preset cpu]`: load the models shipped in
    course_lib, or train (or load from the cache) with a preset."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if shipped is not None:
        parser.add_argument("--shipped", action="store_true", help=shipped)
        parser.add_argument("--preset", default="cpu")
    return parser


def parse_bench_args(parser: argparse.ArgumentParser):
    """Add --device (default: `get_device`'s choice) and --out (where figures and results go, output/figures by
    default) after the script's own options, parse the command line and return (args, the device, the --out folder,
    created)."""
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="output/figures")
    args = parser.parse_args()
    device, folder = get_device(args.device), Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    return args, device, folder


def pattern_by_asked(hits, requests) -> dict:
    """How often (%) the pattern judge read the asked-for pattern, by the pattern asked: `hits` is `attribute_hits`'s
    frame for `held_out_requests` `requests`, one row each."""
    return {PATTERNS[k]: round(100 * v, 1) for k, v in hits["pattern"].groupby(requests["pattern"]).mean().items()}
