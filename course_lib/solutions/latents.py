"Chapter 2's exercises (02_latents): encode and scale, a latent's shape, and how few bits a latent number needs."
import functools

import torch
from diffusers import AutoencoderKL

from course_lib.colour_fashion import draw_colour_fashion
from course_lib.exercises import Exercise, Slip, tensor_difference
from course_lib.garments import draw_fashion
from course_lib.latents import decode, encode, psnr
from course_lib.models import load_course_model
from course_lib.solutions.rules import breaks
from course_lib.training import unit_images


@functools.lru_cache(maxsize=1)
def shipped_vaes() -> tuple:
    "The course's two trained VAEs, on the CPU: chapter 2c's Fashion VAE (1 channel) and chapter 5's colour VAE."
    return (load_course_model("fashion-vae", AutoencoderKL, "cpu"),
            load_course_model("own-sd", AutoencoderKL, "cpu", subfolder="vae"))


def to_latents(vae, images):
    "The latents diffusion works on: the mean of the VAE's posterior for `images` in [0, 1], times its scaling factor."
    with torch.no_grad():
        posterior = vae.encode(images * 2 - 1).latent_dist  # the VAE reads [-1, 1]
    return posterior.mean * vae.config.scaling_factor       # the factor from the config, never typed in


def latents_inputs(seed: int) -> tuple:
    "A shipped VAE (the Fashion VAE for even seeds, the colour VAE for odd ones) and 2 of its garments in [0, 1]."
    fashion, colour = shipped_vaes()
    if seed % 2 == 0: return fashion, unit_images(draw_fashion(2, seed=seed)[0])
    return colour, draw_colour_fashion(2, seed=seed)[0].permute(0, 3, 1, 2).float() / 255


def detached_difference(expected, got):
    "`tensor_difference`, on a result detached from autograd (an encoder run outside `torch.no_grad`)."
    return tensor_difference(expected, got.detach() if isinstance(got, torch.Tensor) else got)


def latents_slip(pixels=lambda x: x * 2 - 1, draw=lambda posterior: posterior.mean,
                 scale=lambda latent, vae: latent * vae.config.scaling_factor):
    "A `to_latents` with one thing wrong: the pixels' range, the draw from the posterior, or the scaling."
    def wrong(vae, images):
        with torch.no_grad(): return scale(draw(vae.encode(pixels(images)).latent_dist), vae)
    return wrong


def scaled_copy(got, expected) -> bool:
    "`got` is `expected` times a constant other than 1: the right latents, scaled by the wrong factor."
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape: return False
    got, expected = got.detach().double().flatten(), expected.double().flatten()
    c = (got @ expected) / (expected @ expected)
    return abs(c - 1) > 1e-3 and (got - c * expected).abs().max() < 1e-4 * expected.abs().max()


def sampled_latents(got, expected) -> bool:
    "Close to the mean latents, but not equal and not a multiple of them: a draw from the posterior (small noise)."
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape: return False
    return (got.detach() - expected).abs().mean() < 0.25 * expected.std() and not scaled_copy(got, expected)


TO_LATENTS = Exercise(
    "latents.to_latents", "write", "pictures to latents",
    "Write `to_latents(vae, images)`: the latents a diffusion model works on, for `images` B×C×H×W in [0, 1]. Use "
    "the VAE itself (`vae.encode(...).latent_dist`), not the chapter's `encode`, take the posterior's *mean* (no "
    "random draw), and keep the chapter's conventions. The check runs it with the two trained VAEs that ship with "
    "course_lib, the Fashion VAE (1 channel) and the colour VAE of chapter 5 (3 channels), and compares it with "
    "`encode(vae, images, mode='mean')`.",
    reference=to_latents, inputs=latents_inputs, compare=detached_difference,
    why="The VAE was trained on pixels in [-1, 1], so the pictures are mapped there first; its posterior's mean is the "
        "deterministic latent; and the scaling factor in the config brings the latents to about unit variance, the "
        "scale the diffusion model's noise schedule assumes. Decoding undoes both steps in reverse order.",
    hints=("`vae.encode(x).latent_dist` is a diagonal Gaussian: its `.mean` is the latent without noise.",
           "Two conventions: what range does the VAE read, and what multiplies its latents? Read the factor from "
           "`vae.config`, since the two VAEs have different ones."),
    slips=(Slip("not scaled", "your latents are not scaled: multiply them by `vae.config.scaling_factor`, so that "
                "they have about unit variance, the scale diffusion's noise is drawn at",
                latents_slip(scale=lambda latent, vae: latent)),
           Slip("divided by the factor", "you divided by the scaling factor: encoding *multiplies* by "
                "`vae.config.scaling_factor`; decoding divides by it",
                latents_slip(scale=lambda latent, vae: latent / vae.config.scaling_factor)),
           Slip("SD's factor typed in", "0.18215 is Stable Diffusion's scaling factor; each VAE has its own: read it "
                "from `vae.config.scaling_factor`", latents_slip(scale=lambda latent, vae: latent * 0.18215)),
           Slip("pixels in [0, 1]", "the VAE reads pixels in [-1, 1]: encode `images * 2 - 1`, not the [0, 1] "
                "images themselves", latents_slip(pixels=lambda x: x)),
           Slip("another VAE's factor", "your latents are the right ones times a constant: the scaling factor is "
                "not this VAE's. Read it from `vae.config.scaling_factor` (the Fashion VAE's is 0.5505, the colour "
                "VAE's 0.5771)", latents_slip(scale=lambda latent, vae: latent * 0.5505), scaled_copy),
           Slip("a random draw", "your latents are close to the right ones but not equal: you drew a sample from "
                "`latent_dist`; this function wants its mean (`.mean`), which is the same at every call",
                latents_slip(draw=lambda posterior: posterior.sample()), sampled_latents)))


def same_shape(expected, got) -> str | None:
    "A `compare` for a shape: a tuple, list or `torch.Size` of ints, equal to `expected`."
    if not isinstance(got, (tuple, list, torch.Size)) or not all(isinstance(n, int) for n in got):
        return f"answer with a shape, a tuple like (channels, height, width); got {got!r}"
    return None if tuple(got) == tuple(expected) else f"not {tuple(got)}"


FASHION_SHAPE = Exercise(
    "latents.fashion_shape", "predict", "the Fashion VAE's latent",
    "The Fashion VAE that ships with course_lib (chapter 2c trains it) reads 1×32×32 garments. Its config has "
    "`block_out_channels=(32, 64, 64)` and `latent_channels=4`. Predict the shape of one garment's latent, as a tuple "
    "(channels, height, width). The cell after your answer encodes one.",
    reference=(4, 8, 8), compare=same_shape,
    why="The encoder halves the side once between each pair of its blocks: `2 ** (len(block_out_channels) - 1)` = 4, "
        "so 32 px become 8, and the latent has the VAE's 4 latent channels: 4×8×8, 256 numbers for 1,024 pixels.",
    hints=("`downsampling_factor` counts the halvings: one fewer than there are blocks.",
           "The latent's channels are the VAE's `latent_channels`, whatever the picture's."),
    slips=(Slip("a halving per block", "three blocks halve the side only twice (the last block has no downsampler): "
                "the factor is 2 ** (len(block_out_channels) − 1) = 4, not SD's 8, so 32 px become 8", (4, 4, 4)),
           Slip("the picture's channels", "the latent has the VAE's `latent_channels` (4), not the picture's 1",
                (1, 8, 8)),
           Slip("one halving", "two halvings, not one: 32 → 16 → 8 (the factor is 2 ** (3 − 1) = 4)", (4, 16, 16)),
           Slip("channels last", "diffusers puts channels first: (channels, height, width)", (8, 8, 4))))


@functools.lru_cache(maxsize=1)
def garments_and_latents() -> tuple:
    "200 garments drawn fresh (none from the VAE's training set) in [0, 1], and their scaled mean latents."
    images = unit_images(draw_fashion(200, seed=(0, 2))[0])
    return images, encode(shipped_vaes()[0], images, mode="mean")


def quantised(latents: torch.Tensor, bits: int, clip: float) -> torch.Tensor:
    "`latents` clipped to [-clip, clip] and rounded to 2 ** bits evenly spaced levels across that range."
    levels = 2 ** bits - 1
    unit = (latents.clamp(-clip, clip) + clip) / (2 * clip)
    return (unit * levels).round() / levels * 2 * clip - clip


def quantised_psnr(answer: dict) -> tuple[float, str]:
    images, latents = garments_and_latents()
    reconstruction = decode(shipped_vaes()[0], quantised(latents, answer["bits"], float(answer["clip"])))
    return psnr(images, reconstruction), f"PSNR (dB) of 200 garments through {answer['bits']}-bit latents"


def malformed(answer, expected=None) -> bool:
    if not (isinstance(answer, dict) and {"bits", "clip"} <= set(answer)): return True
    bits, clip = answer["bits"], answer["clip"]
    return not (isinstance(bits, int) and not isinstance(bits, bool) and bits >= 1
                and isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0)


FEW_BITS = Exercise(
    "latents.few_bits", "challenge", "a latent number in 3 bits",
    "The Fashion VAE stores a garment in 256 latent numbers, but as float32 that is 8,192 bits, exactly as many as "
    "its 1,024 uint8 pixels take. Store each latent number in **at most 3 bits**: the check clips the scaled latents "
    "to [−clip, clip], rounds them to 2^bits evenly spaced levels, decodes, and measures the PSNR of 200 garments "
    "drawn fresh against the originals. Reach **27 dB** (unquantised, the round trip scores 30.0 dB). Answer with a "
    "dict `{\"bits\": ..., \"clip\": ...}` (a few seconds on 2 cores).",
    reference={"bits": 3, "clip": 2.5}, measure=quantised_psnr, target=27.0,
    why="The scaling factor makes the latents about unit variance, so most of them lie within ±2.5: clipping there "
        "loses little, and 8 levels 0.7 apart keep 27.5 dB. A range of ±1 clips too many latents (21 dB); the full "
        "range, about ±4, spends the levels on rare values and rounds the common ones coarsely (25.6 dB). At 768 "
        "bits a garment, the latent takes under a tenth of its pixels' bits.",
    hints=("The scaled latents have about unit variance. A clip of 1 cuts many of them; a clip of 10 wastes most "
           "levels: where between is the balance?",
           "Try a few clips between 1.5 and 3.5 at 3 bits; each check takes a few seconds."),
    slips=(Slip("not a dict", "answer with a dict with the keys 'bits' (an int, 1 or more) and 'clip' (a number "
                "above 0)", {"bits": 3}, malformed),
           Slip("too many bits", "at most 3 bits per latent number: with 8 bits and a clip of 4 the round trip "
                "keeps nearly all of its 30 dB, and the challenge is to do with fewer",
                {"bits": 8, "clip": 4.0}, breaks(lambda answer: answer["bits"] > 3, malformed))))

EXERCISES = {"to_latents": TO_LATENTS, "fashion_shape": FASHION_SHAPE, "few_bits": FEW_BITS}
