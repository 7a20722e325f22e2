"Chapter 2c's exercises (02c_latent_diffusion): the scaling factor, the VAE's loss, attention's cost, two-step sampling."
import functools

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel

from course_lib.evaluation import FashionClassifier, class_accuracy
from course_lib.exercises import Exercise, Slip
from course_lib.latent_diffusion import generate_latent_class
from course_lib.models import load_course_model, make_scheduler
from course_lib.solutions.rules import breaks, not_a_recipe, recipe_slips, scalar_difference


def scaling_factor(latents):
    "The number that gives `latents` unit standard deviation: 1 / their std, over all their numbers."
    return 1 / latents.float().std().item()


def scaling_inputs(seed: int) -> tuple:
    "A batch of 64 unscaled 4×8×8 latents with a spread and a per-channel offset of their own."
    g = torch.Generator().manual_seed(seed)
    spread, offset = (5.49, 0.8, 1.8)[seed % 3], torch.randn(1, 4, 1, 1, generator=g)
    return torch.randn(64, 4, 8, 8, generator=g) * spread + offset,


SCALING = Exercise(
    "latent_diffusion.scaling", "write", "the scaling factor, SD's way",
    "Write `scaling_factor(latents)`: from a batch of unscaled latents (N×4×8×8, as the VAE's encoder gives them), "
    "return the one number (a float) that `train_vae` stores as the VAE's `scaling_factor`: multiplied by it, the "
    "latents have a standard deviation of 1. For SD's VAE it is 0.18215.",
    reference=scaling_factor, inputs=scaling_inputs, compare=functools.partial(scalar_difference, rtol=1e-3),
    why="Multiplying by c multiplies the standard deviation by c, so c = 1 / std brings it to 1, the variance the noise "
        "schedule assumes. One number for all channels, as the LDM paper did: SD's latents have a std of about 5.49, "
        "hence 1 / 5.49 = 0.18215.",
    hints=("If the latents' standard deviation is 5.49, by what must they be multiplied to get 1?",
           "`latents.std()` is over all the numbers of the batch; return `1 / latents.std().item()`."),
    slips=(Slip("one per channel", "you computed one factor per channel: SD's `scaling_factor` is a single number, "
                "the standard deviation of all the latents' numbers together (`latents.std()`, no `dim`)",
                lambda latents: 1 / latents.std(dim=(0, 2, 3)),
                lambda got, expected: isinstance(got, torch.Tensor) and got.numel() > 1),
           Slip("the std itself", "that is the standard deviation itself: the factor is what the latents are "
                "*multiplied* by to reach a std of 1, so 1 / std (SD's latents: std 5.49, factor 0.18215)",
                lambda latents: latents.std().item()),
           Slip("1 / variance", "you divided by the variance: multiplying by c multiplies the standard deviation by "
                "c, so the factor is 1 / std, not 1 / std²", lambda latents: 1 / latents.var().item()),
           Slip("not centred", "you divided by the root mean square, which counts the latents' mean too: the standard "
                "deviation is measured around the mean (`latents.std()`)",
                lambda latents: 1 / latents.pow(2).mean().sqrt().item()),
           Slip("SD's number", "0.18215 is SD's VAE's factor, measured on SD's latents: compute this VAE's from the "
                "latents you are given, 1 / their standard deviation", lambda latents: 0.18215)))


def vae_total_loss(x, reconstruction, mean, logvar, kl_weight):
    "The VAE's loss: reconstruction MSE + `kl_weight` × the KL divergence from N(mean, exp(logvar)) to N(0, 1), per pixel."
    reconstruction_loss = F.mse_loss(reconstruction, x)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))  # per image, as diffusers' `posterior.kl()`
    return reconstruction_loss + kl_weight * kl.mean() / x[0].numel()  # per pixel of the image


def vae_loss_inputs(seed: int) -> tuple:
    "Four images in [-1, 1], noisy reconstructions, a latent distribution's mean and log-variance, and a KL weight."
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    reconstruction = x + 0.2 * torch.randn(x.shape, generator=g)
    mean, logvar = 1.5 * torch.randn(4, 4, 8, 8, generator=g), torch.rand(4, 4, 8, 8, generator=g) * -4
    return x, reconstruction, mean, logvar, (0.05, 0.5, 0.01)[seed % 3]


def vae_loss_slip(kl_per_image=lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)),
                  per_pixel=True, reduction="mean"):
    "A `vae_loss` with one thing wrong: the KL's formula, its scale, or the reconstruction's reduction."
    def wrong(x, reconstruction, mean, logvar, kl_weight):
        kl = kl_per_image(mean, logvar).mean() / (x[0].numel() if per_pixel else 1)
        return F.mse_loss(reconstruction, x, reduction=reduction) + kl_weight * kl
    return wrong


VAE_LOSS = Exercise(
    "latent_diffusion.vae_loss", "write", "the VAE's loss",
    "Write `vae_total_loss(x, reconstruction, mean, logvar, kl_weight)`, the total that `vae_loss` of section 1 "
    "returns first: the mean squared error between the images `x` (N×1×32×32) and their `reconstruction`, plus `kl_weight` times "
    "the KL divergence from each latent's distribution N(mean, σ²) (`mean` and `logvar` = log σ², N×4×8×8) to "
    "N(0, 1). Sum the KL over each latent's numbers (as diffusers' `posterior.kl()` does), average it over the batch, "
    "and divide it by the number of pixels in one image, so that it is per pixel. Return a one-element tensor.",
    reference=vae_total_loss, inputs=vae_loss_inputs, compare=scalar_difference,
    why="For a Gaussian N(μ, σ²) against N(0, 1), KL = ½ (μ² + σ² − 1 − log σ²) per number, 0 exactly when μ = 0 and "
        "σ = 1, so it pulls the latents towards N(0, 1) and never pays. Summed over the latent it is what diffusers' "
        "`posterior.kl()` returns; `vae_loss` takes it per pixel so that one `kl_weight` suits any image size.",
    hints=("σ² is `logvar.exp()`; the KL of one number is ½ (μ² + σ² − 1 − log σ²), never negative.",
           "`.sum(dim=(1, 2, 3))` gives one KL per image; then `.mean()` over the batch, `/ x[0].numel()` per pixel."),
    slips=(Slip("negative KL", "your KL is negative: ½ Σ (1 + log σ² − μ² − σ²) needs a minus in front, giving "
                "½ Σ (μ² + σ² − 1 − log σ²), which is never below 0. It is a penalty, added to the loss",
                vae_loss_slip(lambda m, lv: 0.5 * (1 + lv - m ** 2 - lv.exp()).sum(dim=(1, 2, 3)))),
           Slip("no half", "your KL is twice the right one: each number contributes ½ (μ² + σ² − 1 − log σ²)",
                vae_loss_slip(lambda m, lv: (m ** 2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)))),
           Slip("σ for σ²", "you used σ = exp(logvar / 2) where the formula has the variance σ² = exp(logvar)",
                vae_loss_slip(lambda m, lv: 0.5 * (m ** 2 + (lv / 2).exp() - 1 - lv).sum(dim=(1, 2, 3)))),
           Slip("not per pixel", "you did not divide the KL by the pixels of one image (`x[0].numel()`, 1,024 here): "
                "`vae_loss` takes it per pixel, so that `kl_weight` does not depend on the image size",
                vae_loss_slip(per_pixel=False)),
           Slip("KL averaged over numbers", "you averaged the KL over all the latents' numbers: sum it over each "
                "latent's 4×8×8 numbers (one KL per image, `.sum(dim=(1, 2, 3))`), average over the batch, then divide "
                "by the pixels of one image", vae_loss_slip(lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 1 - lv).mean(
                    dim=(1, 2, 3)), per_pixel=False)),
           Slip("summed reconstruction", "you summed the squared errors: the reconstruction term is their mean "
                "(`F.mse_loss`'s default), the MSE that PSNR measures", vae_loss_slip(reduction="sum"))))


ATTENTION_SCORES = Exercise(
    "latent_diffusion.attention_scores", "predict", "what attention saves in latent space",
    "The latent UNet is the pixel UNet's architecture (the `cpu` preset), with attention at the same blocks, but on "
    "4×8×8 latents instead of 1×32×32 images: each feature map it attends over is 4× smaller per side. A "
    "self-attention layer computes one score for every pair of positions (query × key). For one image, one forward "
    "pass, how many times fewer attention scores does the latent UNet compute than the pixel UNet? Answer with a "
    "number.",
    reference=256,
    why="4× smaller per side means 16× fewer positions, and attention scores every pair of them: 16² = 256× fewer "
        "(the pixel UNet's attention runs at 8×8 = 64 positions, 4,096 scores per head; the latent UNet's at 2×2 = 4 "
        "positions, 16 scores). Convolutions only gain the 16×, which is why attention is where the latent space "
        "pays most (chapter 2b).",
    hints=("First count positions: how many times fewer has an 8×8 map than a 32×32 one?",
           "Each score is a pair of positions: if the positions shrink by k, the pairs shrink by k²."),
    slips=(Slip("positions, not pairs", "16× is the saving in positions; attention scores *pairs* of positions, so "
                "the number of scores shrinks with the square: 16²", 16),
           Slip("per side, or numbers", "4× is the saving per side (32 against 8), or in numbers held (1,024 pixels "
                "against 256 latent values, 4 channels each); positions are 16× fewer, and attention scores pairs of "
                "them", 4),
           Slip("the latent's size", "64 is the number of positions of an 8×8 latent, not the ratio: count the pairs "
                "of positions attention scores in each model", 64)))


@functools.lru_cache(maxsize=1)
def shipped_latent_models() -> tuple:
    "The latent UNet, its VAE and the judge that ship with course_lib, loaded once, on the CPU."
    return (load_course_model("latent-unet", UNet2DModel, "cpu"), load_course_model("fashion-vae", AutoencoderKL, "cpu"),
            load_course_model("judge", FashionClassifier, "cpu"))


def two_step_accuracy(answer: dict) -> tuple[float, str]:
    "Class accuracy of 200 garments (20 per class, seed 0) that the shipped latent UNet draws with `answer`'s sampler."
    model, vae, judge = shipped_latent_models()
    no_clipping = {"clip_sample": False} if answer["scheduler"] in ("ddim", "ddpm") else {}  # latents are not in [-1, 1]
    samples = generate_latent_class(model, vae, make_scheduler(answer["scheduler"], **no_clipping), range(10), 20,
                                    guidance_scale=answer["guidance_scale"], num_inference_steps=answer["steps"],
                                    generator=torch.Generator().manual_seed(0), progress=False)
    return class_accuracy(judge, samples, torch.arange(10).repeat_interleave(20)), "class accuracy on 200 garments"


TWO_STEPS = Exercise(
    "latent_diffusion.two_steps", "challenge", "two steps in latent space",
    "The shipped latent UNet and its VAE: draw the asked class at least 88 % of the time in **at most 2 steps**. "
    "Answer with a dict `{\"scheduler\": ..., \"steps\": ..., \"guidance_scale\": ...}` (a scheduler name of "
    "`make_scheduler`; DDIM and DDPM run with `clip_sample=False`, as latents need); the check samples 200 garments, "
    "20 of each class, decodes them and lets chapter 1b's judge count the hits (a few seconds).",
    reference={"scheduler": "ddim", "steps": 2, "guidance_scale": 1.5}, measure=two_step_accuracy, target=0.88,
    why="In two steps DDIM jumps from pure noise almost straight to its prediction of the clean latent, and guidance "
        "extrapolates that prediction: at 2 steps the chapter's guidance 3 gets 81 % here, 5 gets 76 %, while 1.5 gets "
        "91 % (89 % and 90 % with two other seeds). The bigger the steps, the smaller the guidance that works best; at "
        "3 steps guidance 3 already gets 99 %. DDPM does as well as DDIM here; the multistep solvers (DPM-Solver++, "
        "Euler, LMS) get about 40 % in 2 steps with this small model.",
    hints=("Start from DDIM at 2 steps and the chapter's guidance 3: how far short is it? Then move the guidance.",
           "Try guidance scales below 3: the bigger each step, the further a guided prediction overshoots."),
    slips=recipe_slips(2, 3, "3 steps of DDIM get there easily") + (
           Slip("PNDM in two steps", "PNDM starts with several Runge-Kutta warm-up steps of its own, so it cannot "
                "sample in 2: pick another scheduler",
                {"scheduler": "pndm", "steps": 2, "guidance_scale": 3.0},
                breaks(lambda answer: answer["scheduler"] == "pndm", not_a_recipe)),))

EXERCISES = {"scaling": SCALING, "vae_loss": VAE_LOSS, "attention_scores": ATTENTION_SCORES, "two_steps": TWO_STEPS}
