"""How long the procedural offline Fashion set takes to make, on this machine.

    python bench/offline_dataset.py [--repeats 3]

Prints, for the full 60,000 + 10,000 images: drawing the pixels (`draw_fashion`), then building the cached
`datasets.Dataset` from scratch (`load_offline_fashion` into an empty cache folder), then loading it from the cache.
Timings are the median of the repeats; the machine's core count is printed with them.
"""
import os, sys, tempfile

import torch

from course_lib.data import OFFLINE_SIZES, load_offline_fashion
from course_lib.garments import draw_fashion
from common import bench_parser
from timing import timed


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}")
    draw = timed(lambda: [draw_fashion(n, seed=(0, i)) for i, n in enumerate(OFFLINE_SIZES.values())], args.repeats)
    print(f"draw 70,000 images (draw_fashion):                 {draw:6.2f} s")

    def build():
        with tempfile.TemporaryDirectory() as cache:
            for split in OFFLINE_SIZES: load_offline_fashion(split, seed=0, cache_dir=cache)
    print(f"draw + pack + cache both splits (first use):        {timed(build, args.repeats):6.2f} s")
    with tempfile.TemporaryDirectory() as cache:
        for split in OFFLINE_SIZES: load_offline_fashion(split, seed=0, cache_dir=cache)
        cached = timed(lambda: [load_offline_fashion(s, seed=0, cache_dir=cache) for s in OFFLINE_SIZES], args.repeats)
    print(f"load both splits from the cache (every later use):  {cached:6.2f} s")


if __name__ == "__main__":
    sys.exit(main())
