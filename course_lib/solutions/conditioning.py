"Chapter 1's exercises (01_conditioning): the forward noising step, classifier-free guidance, and guidance measured."
import functools

import torch
from diffusers import UNet2DModel

from course_lib.conditioning import generate_from_class
from course_lib.evaluation import FashionClassifier, class_accuracy
from course_lib.exercises import Exercise, Slip
from course_lib.models import load_course_model, make_scheduler
from course_lib.solutions.rules import absolute_difference, breaks, not_a_recipe, recipe_slips

ALPHAS_CUMPROD = make_scheduler("ddpm").alphas_cumprod  # the schedule chapter 1 trains with


def add_noise(clean, timesteps, alphas_cumprod, generator):
    "Noisy images at `timesteps`: each clean image times √ᾱ_t, plus Gaussian noise times √(1 − ᾱ_t)."
    noise = torch.randn(clean.shape, generator=generator)  # Gaussian, drawn from the generator: same seed, same pixels
    alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)  # one ᾱ per image, broadcast over channels and pixels
    return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise


def noising_inputs(seed: int) -> tuple:
    "Four random 1×16×16 images in [-1, 1], a timestep each, the schedule, and a generator for the noise."
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    return clean, torch.randint(0, 1000, (4,), generator=g), ALPHAS_CUMPROD, torch.Generator().manual_seed(100 + seed)


def noise_slip(scale_clean, scale_noise, draw=torch.randn, index=lambda t: t):
    "An `add_noise` with one thing wrong: the scales, the noise's distribution or the timestep's index."
    def wrong(clean, timesteps, alphas_cumprod, generator):
        alpha_bar = alphas_cumprod[index(timesteps)].view(-1, 1, 1, 1)
        return scale_clean(alpha_bar) * clean + scale_noise(alpha_bar) * draw(clean.shape, generator=generator)
    return wrong


def unrelated_noise(got, expected) -> bool:
    "Values differ but their spread matches: Gaussian noise, not the generator's."
    return abs(got.mean() - expected.mean()) < 0.15 and abs(got.std() / expected.std() - 1) < 0.15


NOISING = Exercise(
    "conditioning.noising", "write", "the forward noising step",
    "Write `add_noise(clean, timesteps, alphas_cumprod, generator)`: draw Gaussian noise of `clean`'s shape from "
    "`generator`, and return each image at its own timestep `t`: √ᾱ_t · clean + √(1 − ᾱ_t) · noise, where ᾱ_t is "
    "`alphas_cumprod[t]`. It is what `noise_scheduler.add_noise` does inside `diffusion_loss`.",
    reference=add_noise, inputs=noising_inputs,
    why="ᾱ_t is the fraction of the signal's variance left at step t, so the image is scaled by its square root and the "
        "noise by the square root of the rest: the result keeps unit variance at every t (diffusers' `add_noise`).",
    hints=("`alphas_cumprod[timesteps]` has one value per image; `.view(-1, 1, 1, 1)` lets it multiply N×1×16×16.",
           "`torch.randn(clean.shape, generator=generator)` draws the noise; the scales are `.sqrt()`s of ᾱ and 1 − ᾱ."),
    slips=(Slip("uniform noise", "torch.rand draws uniform noise in [0, 1) (mean 0.5), the original chapter's slip: "
                "diffusion adds Gaussian noise, torch.randn",
                noise_slip(torch.sqrt, lambda a: (1 - a).sqrt(), torch.rand),
                lambda got, expected: (got - expected).mean() > 0.15),
           Slip("variances, not scales", "you multiplied by ᾱ and 1 − ᾱ, the variances: the scales are their square "
                "roots", noise_slip(lambda a: a, lambda a: 1 - a)),
           Slip("swapped scales", "the two scales are swapped: at t = 0 the image must be almost clean, so the image "
                "gets √ᾱ_t and the noise √(1 − ᾱ_t)", noise_slip(lambda a: (1 - a).sqrt(), torch.sqrt)),
           Slip("off-by-one timestep", "you read ᾱ one step early (`alphas_cumprod[t - 1]`): diffusers numbers "
                "timesteps from 0, so step t's ᾱ is `alphas_cumprod[t]`",
                noise_slip(torch.sqrt, lambda a: (1 - a).sqrt(), index=lambda t: t - 1)),
           Slip("noise not from the generator", "your noise is Gaussian but not the generator's: draw it with "
                "`torch.randn(clean.shape, generator=generator)`, so that the same seed gives the same pixels",
                noise_slip(torch.sqrt, lambda a: (1 - a).sqrt(), lambda shape, generator: torch.randn(shape)),
                unrelated_noise)))


def guided(noise_uncond, noise_cond, scale):
    "Classifier-free guidance: from the unconditional prediction, `scale` times the step towards the conditional one."
    return noise_uncond + scale * (noise_cond - noise_uncond)


def guidance_inputs(seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g), (3.0, 7.5, 0.5)[seed % 3]


GUIDANCE = Exercise(
    "conditioning.guidance", "write", "classifier-free guidance",
    "Write `guided(noise_uncond, noise_cond, scale)`: the noise prediction classifier-free guidance uses, from the "
    "model's prediction without the class (`noise_uncond`) and with it (`noise_cond`). At scale 1 it must give "
    "`noise_cond`, at scale 0 `noise_uncond`, and above 1 go further than `noise_cond` in the same direction.",
    reference=guided, inputs=guidance_inputs,
    why="The difference cond − uncond is what the class adds to the prediction; guidance starts from the unconditional "
        "prediction and takes `scale` times that step, past the conditional one when scale > 1.",
    hints=("Write it so that scale = 1 gives back `noise_cond` and scale = 0 `noise_uncond`.",
           "Start from `noise_uncond` and add `scale` times a difference of the two."),
    slips=(Slip("halves swapped", "the two halves are swapped: guidance starts from the unconditional prediction and "
                "moves towards the conditional one, noise_uncond + scale · (noise_cond − noise_uncond)",
                lambda uncond, cond, scale: cond + scale * (uncond - cond)),
           Slip("no starting point", "you return only the scaled difference: add it to `noise_uncond`, where the step "
                "starts", lambda uncond, cond, scale: scale * (cond - uncond)),
           Slip("scaled prediction", "you scaled the conditional prediction itself; guidance scales the *difference* "
                "the class makes", lambda uncond, cond, scale: uncond + scale * cond)))


GUIDANCE_ZERO = Exercise(
    "conditioning.guidance_zero", "predict", "what guidance 0 draws",
    "The cell after this one asks the chapter's UNet for 100 garments at guidance scale 0, 10 of each class, and the "
    "judge of chapter 1b names the class of each. Predict, as a fraction between 0 and 1: how often is it the class "
    "that was asked for?",
    reference=0.1, compare=absolute_difference(0.05),
    why="At scale 0 the formula keeps only the unconditional prediction: the model is asked for 'no class', so what it "
        "draws no longer depends on the class asked, and whatever mix of classes it draws matches the asked one about "
        "1 time in 10 (the committed sweep measured 10.5 % on 200 garments).",
    hints=("Put scale = 0 into your `guided` of exercise 2, noise_uncond + scale · (noise_cond − noise_uncond): "
           "which prediction is left?",
           "The unconditional prediction was trained with the 'no class' label: which class does it draw?"),
    slips=(Slip("the asked class", "at scale 0 the conditional prediction has weight 0: the class never reaches the "
                "model, so it cannot draw the asked one more often than chance", 1.0,
                lambda got, expected: isinstance(got, (int, float)) and got >= 0.5),
           Slip("never", "not zero: without the class the model still draws garments, one of the ten classes, so it "
                "hits the asked one by chance", 0.0, lambda got, expected: isinstance(got, (int, float)) and got < 0.03)))



@functools.lru_cache(maxsize=1)
def shipped_class_models() -> tuple:
    "The class UNet and the judge that ship with course_lib, loaded once, on the CPU."
    return load_course_model("class-unet", UNet2DModel, "cpu"), load_course_model("judge", FashionClassifier, "cpu")


def few_steps_accuracy(answer: dict) -> tuple[float, str]:
    "Class accuracy of 100 garments (10 per class, seed 0) that the shipped UNet draws with `answer`'s sampler."
    model, judge = shipped_class_models()
    samples = generate_from_class(model, make_scheduler(answer["scheduler"]), range(10), 10,
                                  guidance_scale=answer["guidance_scale"], num_inference_steps=answer["steps"],
                                  generator=torch.Generator().manual_seed(0), progress=False)
    return class_accuracy(judge, samples, torch.arange(10).repeat_interleave(10)), "class accuracy on 100 garments"


FEW_STEPS = Exercise(
    "conditioning.few_steps", "challenge", "obedient in five steps",
    "Sampling costs one UNet call per step (two with guidance). With the shipped class UNet, draw the asked class at "
    "least 95 % of the time in **at most 5 steps**, at a guidance scale of at most 7.5. Answer with a dict "
    "`{\"scheduler\": ..., \"steps\": ..., \"guidance_scale\": ...}` (a scheduler name of `make_scheduler`); the check "
    "samples 100 garments, 10 of each class, and the judge of chapter 1b counts the hits (about 10 s on 2 cores).",
    reference={"scheduler": "ddim", "steps": 5, "guidance_scale": 5.0}, measure=few_steps_accuracy, target=0.95,
    why="DDIM at 5 steps and guidance 3 gets about 94 %: the few large steps blur the class a little, and a stronger "
        "guidance scale buys it back (97 % at 5). The multistep solvers (DPM-Solver++, Euler) lose obedience with this "
        "small model at few steps, as section 7 showed.",
    hints=("Start from DDIM, the chapter's sampler, at 5 steps and the chapter's guidance: how far short is it?",
           "Guidance trades variety for obedience: spend some of it."),
    slips=recipe_slips(5, 10, "10 steps of DDIM already get there") + (
           Slip("too much guidance", "at most 7.5: beyond it the garments lose their variety (chapter 1b's FID)",
                {"scheduler": "ddim", "steps": 5, "guidance_scale": 20.0},
                breaks(lambda answer: answer["guidance_scale"] > 7.5, not_a_recipe)),))

EXERCISES = {"noising": NOISING, "guidance": GUIDANCE, "guidance_zero": GUIDANCE_ZERO, "few_steps": FEW_STEPS}
