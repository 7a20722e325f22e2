"Chapter 6's exercises (06_new_words): LoRA's forward pass, old prompts after textual inversion, a colour the VAE carries."
import colorsys, functools

import torch

from course_lib.colour_fashion import PALETTE, garment_colours
from course_lib.exercises import Exercise, Slip
from course_lib.solutions.rules import absolute_difference, breaks, is_number, number_in


def lora_linear(x, weight, down, up, scale):
    "A linear layer with LoRA: `x` (B×d_in) times `weight` (d_out×d_in), plus `scale` × the low-rank update `up @ down`."
    return x @ weight.T + scale * (x @ down.T) @ up.T  # never forms the d_out×d_in product: r(d_in + d_out) work


def lora_inputs(seed: int) -> tuple:
    "A batch of 8 inputs of 32 features, a 48×32 weight, LoRA's down (r×32) and up (48×r) of rank 2, 4 or 8, a scale."
    g = torch.Generator().manual_seed(seed)
    rank = (2, 4, 8)[seed % 3]
    return (torch.randn(8, 32, generator=g), torch.randn(48, 32, generator=g), torch.randn(rank, 32, generator=g),
            torch.randn(48, rank, generator=g), (0.5, 1.0, 2.0)[seed % 3])


LORA_FORWARD = Exercise(
    "new_words.lora_forward", "write", "a linear layer with LoRA",
    "peft wraps each attention projection of the UNet: the frozen weight W (d_out×d_in) stays, and beside it two small "
    "trained matrices, `down` (A, r×d_in) and `up` (B, d_out×r), add the update `scale` × B A. Write "
    "`lora_linear(x, weight, down, up, scale)` for a batch `x` (B×d_in) that returns the layer's output (B×d_out): "
    "the frozen layer's output plus the update's, without bias. Do it without ever forming the d_out×d_in matrix B A.",
    reference=lora_linear, inputs=lora_inputs,
    why="y = x Wᵀ + scale · (x Aᵀ) Bᵀ: x goes down to r numbers and back up, r(d_in + d_out) multiply-adds per input "
        "instead of d_in · d_out. With B = 0, as peft starts it (diffusers' 'gaussian' init draws A and zeros B), "
        "the layer is the frozen one exactly, so training starts from the model as it was.",
    hints=("Each matrix maps from its columns to its rows: `x @ weight.T` is the frozen layer.",
           "The update's path is x → r numbers → d_out numbers: `(x @ down.T) @ up.T`."),
    slips=(Slip("no scale", "you left out `scale` (peft's lora_alpha / r): multiply the update's path by it",
                lambda x, w, a, b, s: x @ w.T + (x @ a.T) @ b.T),
           Slip("the update alone", "you returned only the update: the frozen layer's output, `x @ weight.T`, is "
                "still there; LoRA adds to it", lambda x, w, a, b, s: s * (x @ a.T) @ b.T),
           Slip("the frozen layer alone", "you returned the frozen layer's output only: add `scale` times the "
                "update's path, x through `down` then `up`", lambda x, w, a, b, s: x @ w.T)))


OLD_PROMPT = Exercise(
    "new_words.old_prompt", "predict", "an old prompt after textual inversion",
    "The next cell draws \"a red dress\" with 8 seeds on the shipped model, loads the textual inversion of section 2 "
    "into it, and draws the same 8 again. Predict: how many of the 8 images differ from before in at least one pixel?",
    reference=0, compare=absolute_difference(0),
    why="Textual inversion adds a row to the embedding table and trains only that row; the other rows, the text "
        "encoder's layers and the UNet are untouched. A prompt without the new word reads only old rows, so every "
        "number on its way to the pixels is the same as before: 0 of 8, bit for bit.",
    hints=("Which weights did `train_textual_inversion` change, and which of them does \"a red dress\" read?",),
    slips=(Slip("all of them", "the model did change, but only where the new token's row is read: \"a red dress\" "
                "never reads it", 8, number_in(7, 8)),
           Slip("a few", "nothing random is left between the prompt and the pixels (the seeds are fixed), so the "
                "images are all the same or all different: here all the same", 2, number_in(1, 6))))


def hue_degrees(rgb) -> float: return colorsys.rgb_to_hsv(*rgb)[0] * 360


def hue_gap(a: float, b: float) -> float: return min(abs(a - b), 360 - abs(a - b))


TAKEN = {**{name: hue_degrees(rgb) for name, rgb in PALETTE.items() if name not in ("white", "grey")},
         "cerulean": 205.0, "chartreuse": 84.0}  # the palette's eight hues and the chapter's two candidates


@functools.lru_cache(maxsize=1)
def shipped_vae():
    "Chapter 5's colour VAE as shipped, on the CPU."
    from course_lib.own_sd import shipped_own_sd
    return shipped_own_sd("cpu").vae


def comes_back(answer: dict) -> tuple[float, str]:
    "The share of 32 garments drawn in `answer`'s colour that the shipped VAE gives back as that colour."
    from course_lib.latents import decode, encode
    from course_lib.new_words import concept_examples
    colour = {answer["name"]: tuple(answer["rgb"])}
    images = concept_examples(32, seed=5, colour=colour)["images"]
    with torch.no_grad(): back = decode(shipped_vae(), encode(shipped_vae(), images, mode="mean"))
    measured = garment_colours((back.permute(0, 2, 3, 1) * 255).round().to(torch.uint8), colour)
    return (measured == len(PALETTE)).float().mean().item(), f"share of 32 garments back from the VAE as {answer['name']}"


def malformed(answer, expected=None) -> bool:
    return not (isinstance(answer, dict) and isinstance(answer.get("name"), str) and
                isinstance(answer.get("rgb"), (tuple, list)) and len(answer["rgb"]) == 3 and
                all(is_number(v) and 0 <= v <= 1 for v in answer["rgb"]))


def nearest_taken(answer) -> tuple[str, float]:
    hue = hue_degrees(answer["rgb"])
    return min(((name, hue_gap(hue, h)) for name, h in TAKEN.items()), key=lambda pair: pair[1])


JADE = {"name": "jade", "rgb": (0.14, 0.9, 0.52)}  # hue 150°: between green (124°) and cyan (183°)

VAE_CARRIES = Exercise(
    "new_words.vae_carries", "challenge", "a new colour the VAE carries",
    "Find another new colour worth teaching: one the shipped colour VAE gives back as itself on **at least 90 %** of 32 "
    "garments (each measured from its pixels among PALETTE's ten and yours), with a hue at least 20° from each of "
    "the palette's eight hues and from chartreuse (84°) and cerulean (205°), and saturated (HSV saturation of at "
    "least 0.5). Answer with a dict `{\"name\": ..., \"rgb\": (r, g, b)}`, each value from 0 to 1.",
    reference=JADE, measure=comes_back, target=0.9,
    why="Between green and cyan the VAE's latents have room: jade (150°) comes back as itself. Which hues between "
        "its ten colours a VAE carries is decided by its training: the VAE shipped before this one, the same shape "
        "in half as many steps, gave chartreuse back yellow, and this one gives it back as chartreuse. Only "
        "measuring tells which; only the ones it carries can be taught.",
    hints=("Section 1's cell sends candidates through the VAE: try hues in each gap of the palette.",
           "`colorsys.hsv_to_rgb(hue / 360, 0.85, 0.9)` gives a saturated colour of any hue."),
    slips=(Slip("not a colour", "answer with a dict: 'name' (a string) and 'rgb' (three numbers from 0 to 1)",
                {"name": "jade"}, malformed),
           Slip("a palette name", "that name is one of the palette's: pick a new word",
                {"name": "green", "rgb": (0.14, 0.9, 0.52)}, breaks(lambda a: a["name"] in PALETTE, malformed)),
           Slip("grey, nearly", "that colour is barely a colour: give it a saturation of at least 0.5 (the largest "
                "channel at least twice the smallest)", {"name": "mist", "rgb": (0.6, 0.62, 0.65)},
                breaks(lambda a: colorsys.rgb_to_hsv(*a["rgb"])[1] < 0.5, malformed)),
           Slip("a hue already taken", "its hue is within 20° of one the palette, chartreuse or cerulean has "
                "already: pick one in a gap between them", {"name": "sky", "rgb": (0.15, 0.55, 0.9)},
                breaks(lambda a: nearest_taken(a)[1] < 20, malformed))))

EXERCISES = {"lora_forward": LORA_FORWARD, "old_prompt": OLD_PROMPT, "vae_carries": VAE_CARRIES}
