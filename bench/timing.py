"Shared by the bench scripts (run as `python bench/<script>.py`, so this folder is on the import path)."
import statistics, time


def timed(fn, repeats: int) -> float:
    "Median wall-clock seconds of `repeats` calls of `fn`."
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side_seconds(*fns, repeats: int = 3) -> list[float]:
    "The fastest of `repeats` timed calls of each of `fns`, called in turn (after one warm-up each): same load for all."
    for fn in fns: fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times):
            start = time.perf_counter(); fn(); seconds.append(time.perf_counter() - start)
    return [min(seconds) for seconds in times]
