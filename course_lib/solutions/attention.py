"Chapter 2b's exercises (02b_attention): attention by hand, what heads cost, and attention within a memory budget."
import math

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from course_lib.attention import native_stderr_silenced, peak_memory
from course_lib.exercises import Exercise, Slip, tensor_difference
from course_lib.solutions.rules import number_in


def attention(q, k, v):
    "Scaled dot-product attention by hand: softmax(q·kᵀ / √d) · v, the softmax over the keys."
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # …×N_q×N_k: every query against every key
    return scores.softmax(dim=-1) @ v                           # each query's weights sum to 1 over the keys


def attention_inputs(seed: int) -> tuple:
    "q, k, v of 2 images × 2 heads × 16 tokens × 8 features each."
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))


def attention_slip(scale=lambda d: 1 / math.sqrt(d), axis=-1, normalise=True):
    "An `attention` with one thing wrong: the scale, the softmax's axis, or no softmax."
    def wrong(q, k, v):
        scores = q @ k.transpose(-2, -1) * scale(q.shape[-1])
        return (scores.softmax(dim=axis) if normalise else scores) @ v
    return wrong


BY_HAND = Exercise(
    "attention.by_hand", "write", "attention by hand",
    "Write `attention(q, k, v)`: scaled dot-product attention, softmax(q·kᵀ / √d)·v, from matrix products and a "
    "softmax, where q, k and v are tensors …×N×d (here 2 images × 2 heads × 16 tokens × 8 features) and d is the "
    "last dimension. It is what the classic kernel computes; the check compares yours with PyTorch's fused "
    "`F.scaled_dot_product_attention`.",
    reference=attention, inputs=attention_inputs,
    why="q·kᵀ compares every query with every key (the N×N score matrix of this notebook), dividing by √d keeps the "
        "scores' spread near 1 whatever the head's width, and the softmax over the keys turns each query's row into "
        "weights that sum to 1, with which it averages the values.",
    hints=("`k.transpose(-2, -1)` swaps the last two dimensions, so `q @ k.transpose(-2, -1)` is …×N×N.",
           "Scale by `1 / math.sqrt(q.shape[-1])`, and take the softmax over the last dimension, the keys."),
    slips=(Slip("no scale", "you left out the 1/√d: without it the scores' spread grows with the head's width and "
                "the softmax saturates; divide q·kᵀ by `math.sqrt(q.shape[-1])`", attention_slip(lambda d: 1)),
           Slip("divided by d", "divide by √d, not by d: the scores of d-wide vectors have a standard deviation of √d",
                attention_slip(lambda d: 1 / d)),
           Slip("softmax over the queries", "your softmax runs over the queries (dim −2): each query's weights must "
                "sum to 1 over the keys, so take it over the last dimension, `softmax(dim=-1)`",
                attention_slip(axis=-2)),
           Slip("no softmax", "the scores go through a softmax before they weight the values: without it the weights "
                "neither stay positive nor sum to 1", attention_slip(normalise=False))))


HEADS = Exercise(
    "attention.heads", "predict", "what eight heads cost",
    "The classic kernel on a 64×64 map with 64 channels, first with 1 head of 64 features, then with 8 heads of 8 "
    "features each: the same channels, split. Predict how many times the peak memory of the 8-head block is the "
    "1-head block's. The cell after your answer measures both, and the fused kernel's too.",
    reference=8,
    why="Each head compares every token with every other in its own N×N score matrix, whatever the head's width: 8 "
        "heads hold 8 matrices of 4,096 × 4,096 (64 MiB each in fp32, twice with the softmax), so the peak grows "
        "about 8× (132 → 1,028 MiB on a CPU) while the projections stay the same size. The fused kernel never stores "
        "the matrices, so its peak does not grow at all.",
    hints=("How big is one head's score matrix, and does it depend on how many features the head has?",),
    slips=(Slip("the same", "the heads split the channels, but each head still has its own N×N score matrix, whose "
                "size does not depend on the head's width: 8 heads, 8 matrices", 1, number_in(0.8, 1.25)),
           Slip("an eighth", "the heads split the channels, not the tokens: each head still has a full N×N score "
                "matrix, so 8 heads hold 8 of them, not an eighth of one", 0.125, number_in(0.1, 0.15)),
           Slip("squared", "the score matrix is N×N in the tokens, but there is one per head: the memory grows with "
                "the number of heads, not its square", 64, number_in(50, 80))))


def budget_inputs() -> tuple:
    "q, k, v of one 64-wide head on a 64×64 map: 1 × 1 × 4,096 tokens × 64 features, seed 0."
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 1, 4096, 64, generator=g) for _ in range(3))


FUSED_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention")


LAST_RUN: dict = {}  # the answer this check ran, what it returned or raised, and the names of the ops it ran


def run(answer) -> tuple:
    "Run `answer` on the challenge's q, k, v under the profiler: (what it returned or raised, the names of its ops)."
    profiler = profile(activities=[ProfilerActivity.CPU])
    with native_stderr_silenced(): profiler.start()
    try:
        with torch.no_grad(): result = answer(*budget_inputs())
    except Exception as error: result = error
    finally:
        with native_stderr_silenced(): profiler.stop()
    LAST_RUN.update(answer=answer, result=result, ops=frozenset(event.name for event in profiler.events()))
    return result, LAST_RUN["ops"]


def last_run(answer) -> tuple:
    "The run this check made of `answer` (the first rule that runs it, `raises`, runs it afresh at every check)."
    return (LAST_RUN["result"], LAST_RUN["ops"]) if LAST_RUN.get("answer") is answer else run(answer)


def raises(answer, expected=None) -> bool: return callable(answer) and isinstance(run(answer)[0], Exception)


def fused(answer, expected=None) -> bool:
    return callable(answer) and any(op in name for name in last_run(answer)[1] for op in FUSED_OPS)


def wrong_result(answer, expected=None) -> bool:
    if not callable(answer): return False
    q, k, v = budget_inputs()
    return tensor_difference(F.scaled_dot_product_attention(q, k, v), last_run(answer)[0]) is not None


def chunked_attention(q, k, v, chunk: int = 128):
    "Attention a chunk of queries at a time: each chunk's scores are chunk × N, never the whole N × N."
    scale = 1 / math.sqrt(q.shape[-1])
    return torch.cat([(q[..., i:i + chunk, :] @ k.transpose(-2, -1) * scale).softmax(dim=-1) @ v
                      for i in range(0, q.shape[-2], chunk)], dim=-2)


def keys_split(q, k, v, chunk: int = 512):
    "A slip: the keys and values split in chunks, each with a softmax of its own, and the chunks' outputs added."
    scale = 1 / math.sqrt(q.shape[-1])
    return sum((q @ k[..., i:i + chunk, :].transpose(-2, -1) * scale).softmax(dim=-1) @ v[..., i:i + chunk, :]
               for i in range(0, k.shape[-2], chunk))


def budget_memory(answer) -> tuple[float, str]:
    q, k, v = budget_inputs()
    with torch.no_grad(): peak = peak_memory(lambda: answer(q, k, v), "cpu")
    return peak / 2**20, "peak memory (MiB) of one head on a 64×64 map"


CHUNKED = Exercise(
    "attention.chunked", "challenge", "attention in 8 MiB",
    "One 64-wide head of attention on a 64×64 map: q, k and v are 1 × 1 × 4,096 tokens × 64 features. Computed "
    "whole, its score matrix alone takes 64 MiB in fp32, and exercise 1's `attention` peaks at 129 MiB (the scores "
    "and their softmax). Write a function `(q, k, v) -> output` that gives the same output (within 1e-5) with a peak "
    "of **at most 8 MiB**, from matrix products and softmaxes: PyTorch's fused kernel "
    "(`F.scaled_dot_product_attention`) is what you are rebuilding, so it is not allowed. The check measures the peak "
    "on the CPU with `peak_memory`, in about a second.",
    reference=chunked_attention, measure=budget_memory, target=8.0, lower_is_better=True,
    why="Each query's output needs its own row of scores only, softmaxed over all the keys. Taken 128 queries at a "
        "time, a chunk's scores are 128 × 4,096 (2 MiB, twice with the softmax): the peak falls to 5 MiB, the "
        "output's 1 MiB included, for the same work. 512 queries a chunk peak at 17 MiB and 256 at 9. Memory-"
        "efficient attention does this on the GPU, and flash attention also splits the keys, carrying each row's "
        "running maximum and sum, so that no chunk holds a whole row.",
    hints=("The memory is the score matrix's. Does one query need the other queries' scores?",
           "Split q along its tokens (`q[..., i:i + chunk, :]`), compute each chunk's attention against all of k and "
           "v (your `attention` of exercise 1 does it for a chunk), and `torch.cat` the chunks along the tokens. The "
           "peak grows with the chunk: measure a few."),
    slips=(Slip("not a function", "answer with a function `(q, k, v) -> output`: define it, then put its name in place "
                "of the `...`", 8, lambda answer, expected: not callable(answer)),
           Slip("raises", "your function raised an error on q, k and v of 1 × 1 × 4,096 × 64: call it on three "
                "`torch.randn(1, 1, 4096, 64)` yourself to see it", lambda q, k, v: q[5], raises),
           Slip("fused kernel", "your function calls PyTorch's fused attention (`scaled_dot_product_attention`, "
                "directly or through a module): the challenge is to stay within the budget with matrix products and "
                "softmaxes", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), fused),
           Slip("wrong result", "your output differs from attention's (`F.scaled_dot_product_attention` on the same "
                "q, k, v) by more than 1e-5, or is not a float32 tensor of q's shape: each query's softmax must run "
                "over *all* 4,096 keys, so split the queries, not the keys, and keep the 1/√d scale",
                keys_split, wrong_result)))

EXERCISES = {"by_hand": BY_HAND, "heads": HEADS, "chunked": CHUNKED}
