"Shared by the bench scripts (run as `python bench/<script>.py`, so this folder is on the import path)."
import statistics, time


def timed(fn, repeats: int) -> float:
    "Median wall-clock seconds of `repeats` calls of `fn`."
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)
