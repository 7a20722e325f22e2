"Chapter 3b's exercises (03b_text_encoders): CLIP's contrastive loss, the loss of an untrained CLIP, prompts for zero-shot."
import functools

import torch
import torch.nn.functional as F
from transformers import CLIPModel

from course_lib.colour_fashion import CLASS_NOUNS, PALETTE, PATTERN_WORDS, colour_tensors, load_colour_fashion
from course_lib.exercises import Exercise, Slip
from course_lib.models import load_clip_tokenizer, load_course_model
from course_lib.solutions.rules import absolute_difference, breaks, number_in, scalar_difference
from course_lib.text_encoders import clip_vectors


def contrastive_loss(image_vectors, text_vectors, temperature):
    "CLIP's symmetric loss: cosine similarities / `temperature`, cross-entropy image→caption and caption→image, mean."
    images, texts = F.normalize(image_vectors, dim=-1), F.normalize(text_vectors, dim=-1)  # unit vectors
    logits = images @ texts.T / temperature  # row i: image i against every caption; its own is caption i
    match = torch.arange(len(logits))
    return (F.cross_entropy(logits, match) + F.cross_entropy(logits.T, match)) / 2


def contrastive_inputs(seed: int) -> tuple:
    "A batch of image and caption vectors (not unit length), each caption's near its image's, and a temperature."
    g = torch.Generator().manual_seed(seed)
    n, width = (8, 16, 5)[seed % 3], 32
    images = torch.randn(n, width, generator=g) * 3
    texts = images + 8 * torch.randn(n, width, generator=g)
    return images, texts, (0.07, 0.5, 0.1)[seed % 3]


def loss_slip(normalise=True, scale=lambda logits, t: logits / t, combine=lambda a, b: (a + b) / 2):
    "A `contrastive_loss` with one thing wrong: no normalising, the temperature's use, or how the directions combine."
    def wrong(image_vectors, text_vectors, temperature):
        images, texts = ((F.normalize(image_vectors, dim=-1), F.normalize(text_vectors, dim=-1)) if normalise
                         else (image_vectors, text_vectors))
        logits, match = scale(images @ texts.T, temperature), torch.arange(len(image_vectors))
        return combine(F.cross_entropy(logits, match), F.cross_entropy(logits.T, match))
    return wrong


CONTRASTIVE = Exercise(
    "text_encoders.contrastive", "write", "CLIP's contrastive loss",
    "Write `contrastive_loss(image_vectors, text_vectors, temperature)`: for a batch of N images and their N captions "
    "(N×D vectors each, as the towers give them, not yet of unit length; caption i describes image i), return CLIP's "
    "loss: the cosine similarity of every image with every caption, divided by `temperature`, then the cross-entropy "
    "that each image picks its own caption and each caption its own image, averaged over both. It is what "
    "`clip_loss` gets from `CLIPModel` (which stores log(1 / temperature) as `logit_scale`).",
    reference=contrastive_loss, inputs=contrastive_inputs, compare=scalar_difference,
    why="Normalised vectors make the dot product a cosine; dividing by a small temperature sharpens the softmax. Row i "
        "of the N×N logits is image i against every caption, so `cross_entropy(logits, arange(N))` asks each image "
        "for its own caption, and the transpose asks each caption for its own image; CLIP averages the two, exactly "
        "as transformers' `CLIPModel` does with `return_loss=True`.",
    hints=("`F.normalize(v, dim=-1)` gives unit vectors; then `images @ texts.T` is the N×N table of cosines.",
           "The right answer for row i is column i: `F.cross_entropy(logits, torch.arange(N))`, once for `logits` and "
           "once for `logits.T`."),
    slips=(Slip("one direction: images", "you took the cross-entropy one way only, each image picking among the "
                "captions: CLIP's loss is symmetric, the mean of that and of each caption picking among the images "
                "(the transpose of the logits)", loss_slip(combine=lambda a, b: a)),
           Slip("one direction: captions", "you took the cross-entropy one way only, each caption picking among the "
                "images: CLIP's loss is symmetric, the mean of that and of each image picking among the captions "
                "(the logits, not transposed)", loss_slip(combine=lambda a, b: b)),
           Slip("sum of directions", "you added the two directions' cross-entropies: CLIP takes their mean (divide "
                "by 2)", loss_slip(combine=lambda a, b: a + b)),
           Slip("no temperature", "you left out the temperature: divide the cosine similarities by it (a temperature "
                "of 0.07, CLIP's initial one, multiplies them by about 14)", loss_slip(scale=lambda logits, t: logits)),
           Slip("times the temperature", "you multiplied the cosine similarities by the temperature: divide by it, so "
                "that a small temperature makes the softmax sharper", loss_slip(scale=lambda logits, t: logits * t)),
           Slip("not normalised", "you used plain dot products: normalise each vector to unit length first "
                "(`F.normalize(v, dim=-1)`), so that the dot product is a cosine similarity",
                loss_slip(normalise=False))))



UNTRAINED_LOSS = Exercise(
    "text_encoders.untrained_loss", "predict", "the loss of a CLIP that knows nothing",
    "Fresh towers, never trained (`make_clip_towers(\"cpu\")`), score a batch of 256 held-out garments against "
    "their 256 captions, and `clip_loss` takes CLIP's loss of the batch. Predict it, to within 0.5: what does the "
    "loss come to when the towers cannot tell one caption from another?",
    reference=5.55, compare=absolute_difference(0.5),
    why="A model that knows nothing gives each of the 256 captions about the same probability, 1/256, and the "
        "cross-entropy is −log of the right one's: ln 256 = 5.55, in both directions. The fresh towers measure a "
        "little more, 5.75 (their random similarities are not all equal); the shipped towers, trained, get 1.71 on "
        "the same batch.",
    hints=("Untrained, the softmax over the 256 captions is nearly uniform. What probability does the right caption "
           "get?", "The cross-entropy is −log(probability of the right answer)."),
    slips=(Slip("a probability", "that is about the probability the right caption gets by chance (1/256); the loss is "
                "minus its logarithm", 1 / 256, number_in(1e-9, 0.05)),
           Slip("perfect", "0 is the loss of a model that is always sure and right; an untrained one spreads its "
                "probability over all 256 captions", 0.0, number_in(-1.0, 0.3)),
           Slip("ten classes", "there are no ten classes here: each image must pick its own caption among all 256 of "
                "the batch (and each caption its image), so chance is 1/256, not 1/10", 2.3, number_in(1.9, 2.7)),
           Slip("the batch size", "the loss is a cross-entropy, −log of a probability: with 256 equally likely "
                "captions it is ln 256, not 256", 256.0, number_in(50, 1e9))))


@functools.lru_cache(maxsize=1)
def held_out_colours() -> tuple:
    "The shipped CLIP towers, the tokenizer, and the unit vectors and colours of the 10,000 held-out garments."
    towers, tokenizer = load_course_model("clip-towers", CLIPModel, "cpu"), load_clip_tokenizer(verbose=False)
    colour = colour_tensors(load_colour_fashion("test"), "cpu")
    pictures, _ = clip_vectors(towers, tokenizer, colour["images"].permute(0, 3, 1, 2).float() / 255, [""])
    return towers, tokenizer, pictures, colour["colour"]


def prompt_lists(answer) -> list:
    "Each colour's prompts as a list (a single string counts as a list of one)."
    return [[prompts] if isinstance(prompts, str) else list(prompts) for prompts in answer]


def colour_accuracy(answer) -> tuple[float, str]:
    "Zero-shot colour accuracy of the shipped towers on the held-out garments: each colour's prompt vectors averaged."
    towers, tokenizer, pictures, truth = held_out_colours()
    lists = prompt_lists(answer)
    _, texts = clip_vectors(towers, tokenizer, torch.zeros(1, 3, 32, 32), [p for prompts in lists for p in prompts])
    ends = torch.tensor([len(prompts) for prompts in lists]).cumsum(0).tolist()
    answers = torch.stack([F.normalize(texts[end - len(prompts):end].mean(0), dim=-1)
                           for end, prompts in zip(ends, lists)])
    return (pictures @ answers.T).argmax(1).eq(truth).float().mean().item(), "colour accuracy on 10,000 garments"


def malformed(answer, expected=None) -> bool:
    "Not ten entries, each a prompt or a non-empty list of prompts."
    return not (isinstance(answer, (list, tuple)) and len(answer) == len(PALETTE)
                and all(isinstance(p, str) or (isinstance(p, (list, tuple)) and p and all(isinstance(q, str) for q in p))
                        for p in answer))


def says(prompt: str, colour: str) -> bool: return colour in prompt.lower().replace(",", " ").split()


class Shown(list):
    "A list that shows as the `code` that builds it: a solution to read, not hundreds of prompts."
    def __init__(self, items, code: str): super().__init__(items); self.code = code
    def __repr__(self): return self.code


COLOURS = list(PALETTE)
ENSEMBLE = Shown([[f"a {colour} {words[0]} {nouns[0]}" for nouns in CLASS_NOUNS for words in PATTERN_WORDS]
                  for colour in PALETTE],
                 "[[f\"a {colour} {words[0]} {nouns[0]}\" for nouns in CLASS_NOUNS for words in PATTERN_WORDS]\n"
                 " for colour in PALETTE]  # 50 prompts per colour: 'a red plain t-shirt', 'a red striped t-shirt', ...")

COLOUR_PROMPTS = Exercise(
    "text_encoders.colour_prompts", "challenge", "name the colour",
    "`attribute_prompts` names each colour with one prompt, 'a red garment', and the shipped towers find the colour "
    "of 94.7 % of the 10,000 held-out garments with them. Write prompts that reach **97 %**. Answer with a list of "
    "ten entries, one per colour in `PALETTE`'s order, each a prompt or a list of prompts: the check averages the unit "
    "vectors of a colour's prompts (prompt ensembling, as CLIP's paper did) and calls each garment by the nearest "
    "average. Each prompt must name its own colour and no other.",
    reference=ENSEMBLE,
    measure=colour_accuracy, target=0.97,
    why="The towers learned from captions like 'a striped red tee', never 'a red garment': prompts that read like "
        "those captions land nearer the garments, and averaging many of them (here 50 per colour: every class and "
        "every pattern) cancels what each says besides its colour. Measured for this exercise: 'a red garment' 94.7 %, "
        "the best single prompt tried ('a photo of a red garment') 96.1 %, averaged over the ten class nouns 96.5 %, "
        "over the pattern words about 97.5 %, over both 97.7 %.",
    hints=("Read a few captions the towers trained on (`colour_captions`, section 2): what do they say besides "
           "the colour?", "Write one prompt per class noun and pattern word for each colour, "
           "`f\"a {colour} {pattern} {noun}\"`, and let the check average them."),
    slips=(Slip("not ten lists", "answer with a list of ten entries, one per colour in `PALETTE`'s order (red, "
                "orange, ..., grey), each a prompt or a non-empty list of prompts", "a red garment", malformed),
           Slip("colour unsaid", "every prompt of a colour must name it (entry 0 says 'red', entry 1 'orange', ...): "
                "the answers are the colours, in `PALETTE`'s order and spelling ('grey', not 'gray')",
                [[f"a {nouns[0]}" for nouns in CLASS_NOUNS]] * len(COLOURS),
                breaks(lambda answer: not all(says(p, colour) for colour, prompts in zip(COLOURS, prompt_lists(answer))
                                              for p in prompts), malformed)),
           Slip("another colour", "each prompt must name its own colour and no other: a prompt that names two "
                "colours is not zero-shot for either",
                [[f"a {colour} or {COLOURS[i - 1]} garment"] for i, colour in enumerate(COLOURS)],
                breaks(lambda answer: any(says(p, other) for colour, prompts in zip(COLOURS, prompt_lists(answer))
                                          for p in prompts for other in COLOURS if other != colour), malformed))))

EXERCISES = {"contrastive": CONTRASTIVE, "untrained_loss": UNTRAINED_LOSS, "colour_prompts": COLOUR_PROMPTS}
