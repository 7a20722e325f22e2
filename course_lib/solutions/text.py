"Chapter 3's exercises (03_text): 77 ids the way Stable Diffusion pads and cuts them, counting tokens, a prompt budget."
import functools, random

import torch

from course_lib.exercises import Exercise, Slip
from course_lib.models import load_clip_tokenizer

START, END, CONTEXT = 49406, 49407, 77  # <|startoftext|>, <|endoftext|> (also SD 1's padding), CLIP's 77 places


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    "The CLIP tokenizer Stable Diffusion uses (from the Hub, else built from the merge list that ships with course_lib)."
    return load_clip_tokenizer(verbose=False)


def sd_ids(word_ids):
    "The 77 ids SD feeds for a prompt whose tokens are `word_ids`: start, at most 75 tokens, end, then end as padding."
    ids = [49406, *word_ids[:75], 49407]  # <|startoftext|>, the tokens, <|endoftext|>: a cut drops tokens, not the end
    return torch.tensor(ids + [49407] * (77 - len(ids)))  # SD 1 pads with <|endoftext|>


WORDS = ("a", "photo", "of", "red", "dress", "puppy", "on", "the", "beach", "at", "sunset", "axolotl", "in", "tuxedo",
         "bioluminescent", "jellyfish", "hyperrealistic", "cinematic", "lighting", "artstation", "highly", "detailed",
         "with", "and", "small", "fox", "snowy", "forest", "8k", "café")


def padding_inputs(seed: int) -> tuple:
    "The tokens (no markers) of a random prompt: short, then longer than 75 tokens, then medium."
    rng = random.Random(seed)
    prompt = " ".join(rng.choice(WORDS) for _ in range((7, 70, 25)[seed % 3]))
    return clip_tokenizer()(prompt, add_special_tokens=False, verbose=False).input_ids,


def as_ids(got) -> list | None:
    "`got` as a list of ints, if it is a 1-D tensor or a list or tuple of ints; else None."
    if isinstance(got, torch.Tensor): return got.tolist() if got.ndim == 1 and not got.is_floating_point() else None
    if isinstance(got, (list, tuple)) and all(isinstance(i, int) for i in got): return list(got)
    return None


def ids_difference(expected, got) -> str | None:
    "None if `got` holds `expected`'s ids (a list or a 1-D integer tensor), else where they first differ."
    ids, want = as_ids(got), expected.tolist()
    if ids is None:
        what = (f"a tensor of shape {tuple(got.shape)} and dtype {got.dtype}" if isinstance(got, torch.Tensor)
                else "a list whose items are not all ints" if isinstance(got, (list, tuple)) else type(got).__name__)
        return f"expected a list or a 1-D integer tensor of {CONTEXT} ids (one prompt's), got {what}"
    if len(ids) != len(want): return f"expected {len(want)} ids, got {len(ids)}"
    wrong = [i for i, (g, w) in enumerate(zip(ids, want)) if g != w]
    if not wrong: return None
    name = lambda i: clip_tokenizer().convert_ids_to_tokens(i) if 0 <= i < len(clip_tokenizer()) else "no token"
    i = wrong[0]
    return (f"{len(wrong)} ids differ, the first at position {i}: expected {want[i]} ({name(want[i])}), "
            f"got {ids[i]} ({name(ids[i])})")


def of_length(got) -> list | None:
    "`got` as ids if there are 77 of them, else None (the length slip names the rest)."
    ids = as_ids(got)
    return ids if ids is not None and len(ids) == CONTEXT else None


def padding_slip(build):
    return lambda word_ids: torch.tensor(build(list(word_ids)))


PADDING = Exercise(
    "text.padding", "write", "77 ids, padded and cut as Stable Diffusion does",
    "Write `sd_ids(word_ids)`: from a prompt's tokens (`tokenizer(prompt, add_special_tokens=False).input_ids`, no "
    f"markers), return the {CONTEXT} ids `tokenize` feeds the text encoder, as a list or a 1-D tensor: "
    f"`<|startoftext|>` ({START}), the prompt's tokens (its first 75 if it has more), `<|endoftext|>` ({END}), then "
    f"padding up to {CONTEXT} ids in all. The check compares yours with the real tokenizer's on three random prompts, "
    "one of them too long.",
    reference=sd_ids, inputs=padding_inputs, compare=ids_difference,
    why="CLIP's encoder has 77 positions: the start marker, at most 75 tokens, and the end marker, which must survive "
        "a cut because the pooled vector is read there. SD 1's tokenizer pads with `<|endoftext|>` itself, so "
        "`tokenizer(prompt, padding='max_length', max_length=77, truncation=True)` gives exactly these ids.",
    hints=("77 = 1 start marker + at most 75 tokens + 1 end marker; what is left over is padding.",
           "Cut the tokens to `word_ids[:75]` *before* adding the markers, and pad with the end marker's id, 49407."),
    slips=(Slip("not cut", f"your ids for a prompt of more than 75 tokens are more than {CONTEXT}: CLIP's encoder "
                f"has {CONTEXT} positions and no more, so cut the tokens to their first 75 (`word_ids[:75]`) before "
                "adding the markers",
                padding_slip(lambda ids: [START, *ids, END] + [END] * (CONTEXT - 2 - len(ids))),
                lambda got, expected: (ids := as_ids(got)) is not None and len(ids) > CONTEXT
                and ids[:CONTEXT - 1] == expected.tolist()[:CONTEXT - 1] and ids[CONTEXT - 1] != END),
           Slip("wrong length", f"Stable Diffusion feeds exactly {CONTEXT} ids, the two markers included: the start "
                f"marker, at most 75 tokens, the end marker, then padding up to {CONTEXT} ids in all",
                padding_slip(lambda ids: [START, *(ids + [END] * CONTEXT)[:CONTEXT], END]),
                lambda got, expected: (ids := as_ids(got)) is not None and len(ids) != CONTEXT),
           Slip("no start marker", f"the first id must be `<|startoftext|>` ({START}): CLIP's encoder always saw it at "
                "position 0, so every prompt starts with it, before its first token",
                padding_slip(lambda ids: (ids[:CONTEXT - 1] + [END] * CONTEXT)[:CONTEXT]),
                lambda got, expected: (ids := of_length(got)) is not None and ids[0] != START),
           Slip("padded with 0", f"you padded with 0, which is the id of `!`, a real token: Stable Diffusion 1's "
                f"tokenizer pads with `<|endoftext|>` ({END}), its pad token",
                padding_slip(lambda ids: [START, *ids[:CONTEXT - 2], END] + [0] * (CONTEXT - 2 - len(ids[:75]))),
                lambda got, expected: (ids := of_length(got)) is not None
                and any(g == 0 and w == END for g, w in zip(ids, expected.tolist()))),
           Slip("end marker cut", f"a prompt of more than 75 tokens must still end with `<|endoftext|>` ({END}) at "
                "position 76: keep its first 75 tokens (not 76) and then add the end marker, where CLIP reads its "
                "pooled vector",
                padding_slip(lambda ids: ([START, *ids, END] + [END] * CONTEXT)[:CONTEXT]),
                lambda got, expected: (ids := of_length(got)) is not None and ids[-1] != END)))


AXOLOTL = "a photograph of an axolotl in a tuxedo"

TOKEN_COUNT = Exercise(
    "text.token_count", "predict", "how many places a prompt takes",
    f"Of the 77 ids `tokenize` makes for the prompt `{AXOLOTL!r}`, how many are not padding, the two markers "
    "included (that is, what does its `attention_mask` sum to)? Answer with a number.",
    reference=len(clip_tokenizer()(AXOLOTL).input_ids),
    why="8 words, but 'axolotl' is rare: BPE spells it from 4 pieces (ax, o, lot, l), so the prompt is 11 tokens, "
        "and with `<|startoftext|>` and `<|endoftext|>` 13 of the 77 places are not padding.",
    hints=("Common words are one token each. Is 'axolotl' common in captions?",
           "Count the markers too: the mask is 1 for `<|startoftext|>` and `<|endoftext|>`."),
    slips=(Slip("words", "that is the number of words: a rare word costs several tokens (section 1's 'an axolotl'), "
                "and the two markers take a place each", 8),
           Slip("words and markers", "the markers are counted, but a rare word costs several tokens: BPE spells "
                "'axolotl' from several pieces (section 1)", 10),
           Slip("no markers", "that is the prompt's own tokens: the mask is also 1 for `<|startoftext|>` and "
                "`<|endoftext|>`", 11),
           Slip("all 77", "all 77 ids go to the encoder, but the mask marks the padding after the end marker with 0",
                77)))


LONG_PROMPT = ("a cozy wooden cabin in a snowy pine forest at dusk, warm light glowing in the windows, smoke rising "
               "from the chimney, a frozen lake in the foreground reflecting the pink and purple sky, mountains in "
               "the distance, highly detailed, cinematic lighting, 35mm photograph, award winning, trending on "
               "artstation, by a famous landscape painter, soft colours, peaceful atmosphere, 8k, ultra sharp, "
               "with a small red fox sitting in the snow")  # section 1's, 89 tokens: the fox is cut
PHRASES = tuple(LONG_PROMPT.split(", "))
FOX = PHRASES[-1]
LONG_TOKENS = len(clip_tokenizer()(LONG_PROMPT, verbose=False).input_ids) - 2


def phrases(answer: str) -> list[str]:
    return [p.strip().lower() for p in answer.split(",")]


def not_the_originals(answer, expected=None) -> bool:
    return isinstance(answer, str) and not set(phrases(answer)) <= set(PHRASES)


def kept_phrases(answer: str) -> tuple[int, str]:
    return len(phrases(answer)), f"phrases kept (of {len(PHRASES)})"


def too_long(answer, expected=None) -> bool:
    return isinstance(answer, str) and len(clip_tokenizer()(answer, verbose=False).input_ids) > CONTEXT


def drop(*dropped: str) -> str: return ", ".join(p for p in PHRASES if p not in dropped)


PROMPT_BUDGET = Exercise(
    "text.prompt_budget", "challenge", "save the fox",
    f"Section 1's long prompt is {LONG_TOKENS} tokens, so the fox at its end is cut. Drop as few of its {len(PHRASES)} comma-separated phrases as you can so that the rest fits in 75 "
    "tokens, the fox included: keep at least 14 phrases. Answer with the shortened prompt, a string of the original "
    "phrases, unchanged, separated by commas (any order).",
    reference=drop(PHRASES[3], "highly detailed"), measure=kept_phrases, target=14,
    why="Every phrase after the first also costs its comma, a token. 14 tokens must go, and no single phrase frees "
        "that many; the frozen lake frees the most (13: 12 tokens and its comma), so dropping it and any one other "
        "phrase fits in 75 tokens. Dropping from the end instead (8k, ultra sharp, ...) frees 3 tokens per phrase "
        "and loses five phrases.",
    hints=("Count each phrase's tokens: `len(tokenizer(phrase).input_ids) - 2`, and one more for its comma.",
           "Word count misleads: 'artstation' and '35mm' cost more than one token each. Find the phrase that costs "
           "the most."),
    slips=(Slip("not a string", "answer with the shortened prompt, a string", [PHRASES[0], FOX],
                lambda answer, expected: not isinstance(answer, str)),
           Slip("rewritten", "every comma-separated phrase must be one of the original prompt's, word for word (for "
                "example 'highly detailed'): the challenge is to choose which to keep, not to shorten them",
                "a cabin, with a small red fox sitting in the snow", not_the_originals),
           Slip("a phrase twice", "each phrase may be kept only once",
                f"{FOX}, {PHRASES[1]}, {PHRASES[1]}",
                lambda answer, expected: isinstance(answer, str) and len(set(phrases(answer))) < len(phrases(answer))),
           Slip("no fox", f"the fox must survive: keep the phrase {FOX!r}", drop(FOX),
                lambda answer, expected: isinstance(answer, str) and FOX not in phrases(answer)),
           Slip("still cut", "your prompt is still longer than 75 tokens, so its end is cut (`dropped_text` shows "
                "what): drop more, or drop the phrases that cost the most tokens", drop("8k"), too_long)))

EXERCISES = {"padding": PADDING, "token_count": TOKEN_COUNT, "prompt_budget": PROMPT_BUDGET}
