"Chapter 5's exercises (05_own_sd): caption dropout, a prompt that says \"not\", and a colour the own SD cannot read."
import functools, re

import torch

from course_lib.colour_fashion import CLASS_NOUNS, PALETTE, garment_colours
from course_lib.exercises import Exercise, Slip
from course_lib.solutions.rules import absolute_difference, breaks, number_in

START, END = 49406, 49407  # CLIP's <|startoftext|> and <|endoftext|>, which also pads SD's prompts
EMPTY_IDS = torch.tensor([[START] + [END] * 76])  # what `tokenize(tokenizer, [""]).input_ids` gives


def drop_captions(ids, empty_ids, caption_dropout, generator):
    "`ids` (B×77) with each caption replaced by the empty prompt's `empty_ids` (1×77) with probability `caption_dropout`."
    dropped = torch.rand(len(ids), generator=generator) < caption_dropout  # one draw per caption
    return torch.where(dropped[:, None], empty_ids, ids)                  # a dropped caption becomes "", whole


def caption_ids(seed: int, n: int = 128) -> torch.Tensor:
    "`n` made-up caption ids as SD feeds them: the start marker, 3 to 9 word tokens, then the end marker as padding."
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n, 77), END)
    ids[:, 0] = START
    for row, length in enumerate(torch.randint(3, 10, (n,), generator=g).tolist()):
        ids[row, 1:1 + length] = torch.randint(320, 49405, (length,), generator=g)
    return ids


def dropout_inputs(seed: int) -> tuple:
    "128 captions' ids, the empty prompt's ids, a dropout probability, and a generator for the draws."
    return caption_ids(seed), EMPTY_IDS.clone(), (0.1, 0.3, 0.5)[seed % 3], torch.Generator().manual_seed(100 + seed)


def captions_dropped_elsewhere(got, expected) -> bool:
    "Whole captions dropped, about as many as the generator's draw drops, but other ones: a draw not from `generator`."
    if not torch.is_tensor(got) or got.shape != expected.shape: return False
    empty = (got == EMPTY_IDS).all(1)
    whole = ((got == expected).all(1) | empty | (expected == EMPTY_IDS).all(1)).all()
    return bool(whole and empty.any() and abs(empty.float().mean() - (expected == EMPTY_IDS).all(1).float().mean()) < 0.25)


def ids_difference(expected, got) -> str | None:
    "A `compare` for caption ids: None if `got` holds exactly `expected`'s ids, else what differs."
    if not torch.is_tensor(got): return f"expected a tensor of ids, got {type(got).__name__}"
    if got.shape != expected.shape: return f"wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
    if torch.equal(got, expected): return None
    rows = (got != expected).any(1).sum().item()
    return (f"{rows} of the {len(expected)} captions differ: expected {(expected == EMPTY_IDS).all(1).sum().item()} "
            f"dropped, yours has {(got == EMPTY_IDS).all(1).sum().item()} empty prompts")


def one_coin(ids, empty_ids, caption_dropout, generator):
    "The slip of one draw for the whole batch: every caption dropped, or none."
    return empty_ids.expand_as(ids).clone() if torch.rand(1, generator=generator) < caption_dropout else ids


CAPTION_DROPOUT = Exercise(
    "own_sd.caption_dropout", "write", "caption dropout",
    "Section 4's `text_diffusion_loss` replaces one caption in ten by the empty prompt before encoding: that is what "
    "teaches the UNet its unconditional prediction, the half of guidance that has no prompt. Write "
    "`drop_captions(ids, empty_ids, caption_dropout, generator)`: draw one uniform number per caption with "
    "`torch.rand(len(ids), generator=generator)`; a caption whose number is below `caption_dropout` is dropped and "
    "replaced, whole, by the empty prompt's ids `empty_ids` (1×77, what `tokenize(tokenizer, [\"\"]).input_ids` "
    "gives); the others stay. `ids` is B×77, one caption per row; return a new B×77 tensor.",
    reference=drop_captions, inputs=dropout_inputs,
    why="Each caption is dropped on its own, with probability `caption_dropout`, and becomes exactly what the sampler "
        "later feeds for \"no prompt\": the empty prompt's 77 ids, encoded by the same text encoder. Drawing from "
        "the generator makes training repeatable: the same seed drops the same captions.",
    compare=ids_difference,
    hints=("`dropped = torch.rand(len(ids), generator=generator) < caption_dropout` is one True or False per caption.",
           "`torch.where(dropped[:, None], empty_ids, ids)` picks whole rows: the mask broadcasts along the 77 ids, "
           "`empty_ids` down the batch."),
    slips=(Slip("kept, not dropped", "you dropped the captions whose number is *above* `caption_dropout`: at 0.1 that "
                "drops nine in ten. Drop where `torch.rand(...) < caption_dropout`",
                lambda ids, empty_ids, p, g: torch.where((torch.rand(len(ids), generator=g) >= p)[:, None],
                                                         empty_ids, ids)),
           Slip("zeros", "you replaced the dropped captions by zeros: id 0 is the token '!', not \"no prompt\". "
                "Replace them by `empty_ids`, the empty prompt's ids, which the sampler feeds for the unconditional "
                "half", lambda ids, empty_ids, p, g: torch.where((torch.rand(len(ids), generator=g) < p)[:, None],
                                                                 torch.zeros_like(ids), ids)),
           Slip("tokens, not captions", "you dropped single tokens (one draw per id), which leaves broken captions: "
                "draw one number per caption, `torch.rand(len(ids), ...)`, and replace the whole row",
                lambda ids, empty_ids, p, g: torch.where(torch.rand(ids.shape, generator=g) < p, empty_ids, ids)),
           Slip("one coin for the batch", "you dropped all the captions of the batch or none: draw one number per "
                "caption, so that every batch mixes captions and empty prompts", one_coin),
           Slip("not the generator's draw", "you dropped whole captions, about as many as asked, but not the ones "
                "`generator` picks: draw with `torch.rand(len(ids), generator=generator)`, so that the same seed "
                "drops the same captions",
                lambda ids, empty_ids, p, g: torch.where((torch.rand(len(ids)) < p)[:, None], empty_ids, ids),
                captions_dropped_elsewhere)))


NOT_RED = Exercise(
    "own_sd.not_red", "predict", "a dress that is not red",
    "The cell after this one asks the model of this chapter for \"a dress that is not red\", with 10 seeds, at "
    "guidance 3 and 20 Euler ancestral steps, and measures the colour of each garment from its pixels "
    "(`garment_colours`). Predict: how many of the 10 are red?",
    reference=10, compare=absolute_difference(1),
    why="No caption the model learnt from says \"not\": the captions only name what is there. The text encoder reads "
        "the words it knows, \"dress\" and \"red\", and the model draws what they name; the shipped model drew 10 "
        "red dresses of 10 (and 20 of 20 with 20 seeds).",
    hints=("Which words of the prompt appear in the captions of section 1?",
           "What could \"not\" mean to a model that has only seen captions saying what a garment is?"),
    slips=(Slip("obeyed the not", "a person draws no red dress; the model has never seen \"not\" in a caption (they "
                "only say what is there), so it reads \"dress\" and \"red\", two words it knows well", 0,
                number_in(0, 0)),
           Slip("colour by chance", "that is what a colour left to chance gives (1 in 10 of the palette), but the "
                "colour is not left to chance: \"red\" is a word the model knows well, and \"not\" one it never "
                "learnt", 1, number_in(0.5, 3)),
           Slip("not weakens it", "\"not\" does not weaken \"red\": the model never learnt the word, so the colour "
                "it does know wins nearly every time", 5, number_in(3.5, 8.5))))

COLOUR_WORDS = {"red": ("crimson", "scarlet", "maroon", "burgundy", "ruby", "cherry", "reddish", "vermilion"),
                "orange": ("amber", "tangerine", "apricot", "rust", "copper", "orangey"),
                "yellow": ("golden", "gold", "lemon", "mustard", "canary", "ochre"),
                "green": ("lime", "olive", "emerald", "mint", "jade", "sage"),
                "cyan": ("turquoise", "teal", "aqua", "aquamarine"),
                "blue": ("navy", "azure", "cobalt", "indigo", "sapphire"),
                "purple": ("violet", "lavender", "lilac", "mauve", "plum"),
                "pink": ("magenta", "fuchsia", "rose", "salmon", "blush"),
                "white": ("ivory", "cream", "pearl", "snowy"),
                "grey": ("gray", "silver", "charcoal", "slate", "ash")}  # the palette's other names, that the check knows


def says(prompt: str, words) -> list[str]:
    "Which of `words` `prompt` contains as whole words (case ignored)."
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", prompt, re.I)]


@functools.lru_cache(maxsize=1)
def shipped_pipe():
    "Chapter 5's own Stable Diffusion as shipped with course_lib, loaded once, on the CPU."
    from course_lib.own_sd import shipped_own_sd
    return shipped_own_sd("cpu")


def colour_hits(answer: dict, n: int = 20) -> tuple[float, str]:
    "How often the shipped own SD draws `answer`'s colour for its prompt: `n` seeds, guidance 3, 30 Euler a steps."
    from course_lib.sampling import generate
    samples = generate(shipped_pipe(), [answer["prompt"]] * n, guidance_scale=3.0, num_inference_steps=30,
                       output_type="pt", progress=False,
                       generator=[torch.Generator().manual_seed(i) for i in range(n)])
    drawn = garment_colours((samples.permute(0, 2, 3, 1) * 255).round().to(torch.uint8))
    return (drawn == list(PALETTE).index(answer["colour"])).sum().item() / n, f"share of {n} seeds in {answer['colour']}"


def malformed(answer, expected=None) -> bool:
    return not (isinstance(answer, dict) and {"prompt", "colour", "why"} <= set(answer)
                and all(isinstance(answer[k], str) for k in ("prompt", "colour", "why")))


def asks_for(answer) -> list[str]: return [answer["colour"], *COLOUR_WORDS.get(answer["colour"], ())]


def other_colours(answer) -> list[str]:
    return says(answer["prompt"], [w for c, ws in COLOUR_WORDS.items() if c != answer["colour"] for w in (c, *ws)])


def too_long(answer) -> bool:
    from course_lib.text import dropped_text
    return bool(answer["prompt"].strip()) and bool(dropped_text(shipped_pipe().tokenizer, [answer["prompt"]])[0])


def rule(test):
    "A challenge rule's `detect`: a well-formed answer with a palette colour for which `test(answer)` holds."
    return breaks(lambda answer: answer["colour"] in PALETTE and test(answer), malformed)


UNREAD_COLOUR = Exercise(
    "own_sd.unread_colour", "challenge", "a colour it cannot read",
    "Write a request for a garment in one colour of the palette that a person reads at once, but the own SD gets "
    "wrong: it draws the asked colour on **at most 25 %** of 20 seeds (at guidance 3, 30 Euler ancestral steps; "
    "`garment_colours` measures each). Say why it fails. Answer with a dict `{\"prompt\": ..., \"colour\": ..., \"why\": ...}`: "
    "`colour` is a name of `PALETTE`, and the prompt must name a garment and ask for that colour in words, by its "
    "palette name or another common name for it, without naming any other colour. (\"a red dress\" gets red on 20 "
    "seeds of 20.)",
    reference={"prompt": "a gray coat", "colour": "grey",
               "why": "The captions spell it 'grey'; 'gray' is another token, which the text encoder never saw in "
                      "training, so the prompt reads as 'a coat' and the colour is left to chance."},
    measure=colour_hits, target=0.25, lower_is_better=True,
    why="The own SD knows only the words of its captions. A colour by its palette name always works (each of the ten "
        "gets its colour on 20 seeds of 20 in \"a <colour> dress\", and \"a dress that is not red\" is red on 20 of "
        "20); another name for it (\"gray\", \"crimson\", \"navy\", \"turquoise\") is a token its text encoder "
        "never saw trained, so the colour is left to the garment and to chance: \"a gray coat\" is grey on 0 of 20 "
        "seeds, \"a gray dress\" on 6 (dresses often come out grey), and no other name the check knows went above 8 "
        "of 20 on a dress or a coat (\"an aqua coat\").",
    hints=("What words did the captions of section 1 use for colours? What other words would a person use?",
           "The tokenizer is CLIP's, with 49,408 tokens; the text encoder learnt only those of its captions."),
    slips=(Slip("not a dict", "answer with a dict of three strings: 'prompt', 'colour' and 'why'",
                {"prompt": "a gray dress"}, malformed),
           Slip("not a palette colour", f"`colour` must be one of the palette's names: {', '.join(PALETTE)}",
                {"prompt": "a gray dress", "colour": "gray", "why": "the captions spell it grey, not gray"},
                breaks(lambda answer: answer["colour"] not in PALETTE, malformed)),
           Slip("no colour asked", "the prompt must ask for the colour in words: its palette name or another common "
                "name for it (the check knows: " + "; ".join(f"{c}: {', '.join(ws)}" for c, ws in COLOUR_WORDS.items())
                + "). A prompt without one leaves the colour to chance by design",
                {"prompt": "a dress", "colour": "red", "why": "the prompt does not say which colour it wants"},
                rule(lambda answer: not says(answer["prompt"], asks_for(answer)))),
           Slip("another colour named", "the prompt names another colour as well: ask for one colour only, so that "
                "a miss is the model's, not the prompt's",
                {"prompt": "a red dress with blue stripes", "colour": "red", "why": "it is asked for two colours"},
                rule(other_colours)),
           Slip("no garment", "the prompt must name a garment (a class noun of the captions, such as dress, coat, "
                "sneaker or bag): the model draws nothing else",
                {"prompt": "a crimson cat", "colour": "red", "why": "the captions never say crimson, nor cat"},
                rule(lambda answer: not says(answer["prompt"], [n for ns in CLASS_NOUNS for n in ns]))),
           Slip("cut off", "the prompt is longer than CLIP's 77 tokens, so its end is cut off (chapter 3): keep it "
                "short, so that the model reads all of it",
                {"prompt": "a dress " + "with long sleeves " * 30 + "in red", "colour": "red",
                 "why": "the colour is beyond the 77 tokens and is cut off"},
                rule(too_long)),
           Slip("no reason", "say why it fails, in a sentence of at least five words: that is half of the challenge",
                {"prompt": "a gray dress", "colour": "grey", "why": "dunno"},
                rule(lambda answer: len(answer["why"].split()) < 5))))

EXERCISES = {"caption_dropout": CAPTION_DROPOUT, "not_red": NOT_RED, "unread_colour": UNREAD_COLOUR}
