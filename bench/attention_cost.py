"""Why diffusion moved to latents: time and peak memory of one self-attention block against feature-map size.

    python bench/attention_cost.py [--sizes 32 64 128] [--channels 64] [--min-run-time 0.5] [--device cpu]
                                   [--out output/figures]

Runs `course_lib.attention.attention_cost` (a diffusers `Attention` block, one head, batch 1, with the classic
`AttnProcessor` and with `AttnProcessor2_0` = `F.scaled_dot_product_attention`) on the sizes side by side, prints
the table with the ratio of each size to the previous one (4x the tokens: N² predicts 16x), and saves the plot.
Peak memory: `torch.cuda.max_memory_allocated` on CUDA, the allocations `torch.profiler` records on CPU.
"""
import sys

from course_lib.attention import attention_cost, plot_attention_cost
from common import bench_parser, parse_bench_args


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args, device, out = parse_bench_args(parser)
    table = attention_cost(args.sizes, channels=args.channels, min_run_time=args.min_run_time, device=device)
    print(f"one attention block, {args.channels} channels, 1 head, batch 1, on {device} "
          "(median, torch.utils.benchmark):")
    print(table.drop(columns="device").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    plot_attention_cost(table).savefig(out / "bench-attention-cost.png", dpi=120, bbox_inches="tight")
    print(f"\nfigure: {out / 'bench-attention-cost.png'}")


if __name__ == "__main__":
    sys.exit(main())
