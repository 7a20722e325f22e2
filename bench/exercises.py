"""How long each exercise's check takes: its reference answer (the solution) and each of its slips, median of a few
runs, side by side in one run. The course's targets: a write-it or predict check within 2 s, a challenge within 5
minutes, on 2 CPU cores.

    python bench/exercises.py [--repeats 3] [--challenges]
"""
import statistics, time

from course_lib.exercises import exercise, exercise_keys
from common import bench_parser, parse_bench_args


def seconds(ex, answer, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter(); ex.check(answer); runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--challenges", action="store_true", help="measure the challenges too (minutes)")
    args, _, _ = parse_bench_args(parser)
    print("| exercise | kind | first check s | reference s | slowest slip s | target s |")
    print("|---|---|---:|---:|---:|---:|")
    slowest = {"quick": 0.0, "challenge": 0.0}
    for key in exercise_keys():
        ex = exercise(key)
        if ex.kind == "challenge" and not args.challenges: continue
        first = seconds(ex, ex.reference, 1)  # what a learner waits for: models load on the chapter's first check
        repeats = 1 if ex.kind == "challenge" else args.repeats
        slips = [seconds(ex, slip.answer, repeats) for slip in ex.slips] or [0.0]
        target = 300 if ex.kind == "challenge" else 2
        group = "challenge" if ex.kind == "challenge" else "quick"
        slowest[group] = max(slowest[group], first, max(slips))
        print(f"| {ex.key} | {ex.kind} | {first:.3f} | {seconds(ex, ex.reference, repeats):.3f} | {max(slips):.3f} | "
              f"{target} |", flush=True)
    print(f"\nslowest write-it / predict check: {slowest['quick']:.2f} s (target 2 s)"
          + (f"; slowest challenge check: {slowest['challenge']:.1f} s (target 300 s)" if args.challenges else ""))

if __name__ == "__main__":
    main()
