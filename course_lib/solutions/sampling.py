"Chapter 4's exercises (04_sampling): one DDIM step by hand, what guidance costs the UNet, the colour in three steps."
import functools

import torch

from course_lib.colour_fashion import garment_colours
from course_lib.exercises import Exercise, Slip
from course_lib.models import SD15_SCHEDULER, make_scheduler
from course_lib.solutions.rules import pair_difference, recipe_slips

SD15_ALPHAS_CUMPROD = make_scheduler("ddim", SD15_SCHEDULER).alphas_cumprod  # SD 1.5's schedule: scaled_linear


def ddim_step(noise_pred, t, latents, alphas_cumprod, num_inference_steps):
    "One deterministic DDIM step (η = 0) from timestep `t` to the previous one of `num_inference_steps`."
    prev_t = t - len(alphas_cumprod) // num_inference_steps            # the scheduler's next timestep, lower
    alpha_bar = alphas_cumprod[t]
    alpha_bar_prev = alphas_cumprod[prev_t] if prev_t >= 0 else alphas_cumprod[0]  # SD: set_alpha_to_one=False
    x0 = (latents - (1 - alpha_bar).sqrt() * noise_pred) / alpha_bar.sqrt()      # the clean latents it predicts
    return alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * noise_pred  # noised again, to prev_t


def ddim_inputs(seed: int) -> tuple:
    "A guided noise prediction and latents (2×4×8×8), a timestep of a real schedule: a middle one, the last, the first."
    g = torch.Generator().manual_seed(seed)
    steps = (30, 50, 10)[seed % 3]
    scheduler = make_scheduler("ddim", SD15_SCHEDULER); scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    t = (timesteps[len(timesteps) // 2], timesteps[-1], timesteps[0])[seed % 3]
    return torch.randn(2, 4, 8, 8, generator=g), t, torch.randn(2, 4, 8, 8, generator=g), SD15_ALPHAS_CUMPROD, steps


def ddim_slip(prev=lambda t, steps: t - 1000 // steps, alpha_prev=None, root=torch.sqrt, clip=False, x0_only=False):
    "A `ddim_step` with one thing wrong: the previous timestep or its ᾱ, the square roots, a clipped or returned x̂₀."
    def wrong(noise_pred, t, latents, alphas_cumprod, num_inference_steps):
        prev_t = prev(t, num_inference_steps)
        alpha_bar = alphas_cumprod[t]
        alpha_bar_prev = (alpha_prev(alphas_cumprod, t, prev_t) if alpha_prev
                          else alphas_cumprod[prev_t] if prev_t >= 0 else alphas_cumprod[0])
        x0 = (latents - root(1 - alpha_bar) * noise_pred) / root(alpha_bar)
        if clip: x0 = x0.clamp(-1, 1)
        return x0 if x0_only else root(alpha_bar_prev) * x0 + root(1 - alpha_bar_prev) * noise_pred
    return wrong


DDIM_STEP = Exercise(
    "sampling.ddim_step", "write", "one DDIM step, by hand",
    "Write `ddim_step(noise_pred, t, latents, alphas_cumprod, num_inference_steps)`: what `scheduler.step` returns in "
    "section 3's loop for SD's DDIM scheduler (η = 0, no clipping). From the (guided) noise prediction ε at the int "
    "timestep `t`, predict the clean latents x̂₀ = (x_t − √(1 − ᾱ_t) · ε) / √ᾱ_t, then return them noised again to "
    "the previous timestep of the schedule: √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev) · ε. The previous timestep is "
    "t − 1000 // num_inference_steps (1000 = `len(alphas_cumprod)`, the training steps); on the last step it is "
    "below 0, and SD's scheduler (`set_alpha_to_one=False`) then uses ᾱ of timestep 0. ᾱ_t is `alphas_cumprod[t]`.",
    reference=ddim_step, inputs=ddim_inputs,
    why="DDIM never draws new noise (η = 0): it reads the clean latents off the prediction, then puts back exactly the "
        "noise it predicted, at the next, lower timestep's level; on these inputs it equals diffusers' "
        "`DDIMScheduler.step` with SD 1.5's config, bit for bit.",
    hints=("Three lines: `prev_t`, the two ᾱ's (mind the last step, where `prev_t` is negative), then x̂₀ and the "
           "result.",
           "`alphas_cumprod[t]` is a 0-d tensor: `.sqrt()` works on it, and so does `(1 - alpha_bar).sqrt()`.",
           "A negative index does not fail in Python: `alphas_cumprod[-33]` is the 33rd value from the end."),
    slips=(Slip("no step", "your step gives the latents back unchanged: you used ᾱ_t twice. Noise x̂₀ again with ᾱ of "
                "the previous timestep, t − 1000 // num_inference_steps",
                ddim_slip(alpha_prev=lambda a, t, prev_t: a[t])),
           Slip("one training step", "you stepped to t − 1, one of the 1000 training steps: with "
                "`num_inference_steps` steps the scheduler jumps 1000 // num_inference_steps timesteps at a time",
                ddim_slip(prev=lambda t, steps: t - 1)),
           Slip("steps as the stride", "you stepped back by `num_inference_steps` timesteps: the stride is "
                "1000 // num_inference_steps (33 for 30 steps), so that the steps cover the 1000 training timesteps",
                ddim_slip(prev=lambda t, steps: t - steps)),
           Slip("no square roots", "the scales are the square roots of ᾱ and 1 − ᾱ (ᾱ is a fraction of the variance): "
                "x̂₀ = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t", ddim_slip(root=lambda a: a)),
           Slip("negative index", "right except on the last step, where t − 1000 // num_inference_steps is negative: "
                "`alphas_cumprod[prev_t]` then reads from the end of the schedule (ᾱ near 0, almost pure noise). "
                "Below 0, use `alphas_cumprod[0]`, as SD's scheduler does (`set_alpha_to_one=False`)",
                ddim_slip(alpha_prev=lambda a, t, prev_t: a[prev_t])),
           Slip("final alpha one", "right except on the last step, where you used ᾱ = 1 (`set_alpha_to_one=True`, "
                "diffusers' default), which returns x̂₀ itself: SD's scheduler sets it False and uses "
                "`alphas_cumprod[0]` below 0", ddim_slip(alpha_prev=lambda a, t, prev_t: a[prev_t] if prev_t >= 0
                                                         else torch.tensor(1.0))),
           Slip("clipped x0", "you clipped x̂₀ to [-1, 1]: SD's latents have a spread of about 1 and are no images, "
                "so SD's scheduler keeps `clip_sample=False` (section 4's trap)", ddim_slip(clip=True)),
           Slip("x0 returned", "you returned the predicted clean latents x̂₀: the step goes on to the previous "
                "timestep, √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev) · ε", ddim_slip(x0_only=True))))


GUIDANCE_COST = Exercise(
    "sampling.guidance_cost", "predict", "what guidance costs the UNet",
    "`generate` draws one image with 30 DDIM steps. Count the latents the UNet processes, summed over all its calls "
    "(a call on a batch of two latents counts 2). How many at `guidance_scale=1`, and how many at "
    "`guidance_scale=7.5`? Answer with a pair: (at 1, at 7.5).",
    reference=(30, 60),
    compare=pair_difference(("at guidance 1", "at guidance 7.5"), "a pair of numbers, (at 1, at 7.5)"),
    why="Guidance needs two predictions per step, with the prompt and without it; the loop batches them into one call "
        "on two latents, so the calls stay 30 but the work doubles. At exactly 1 the unconditional half cancels out "
        "of the formula, and `generate` (like diffusers' pipeline) leaves it out: one latent per call.",
    hints=("One scheduler step is one UNet call for DDIM. What does each call get at 7.5?",
           "Put s = 1 into ε(x, ∅) + s · (ε(x, c) − ε(x, ∅)): which prediction is left?"),
    slips=(Slip("guidance for free", "guidance is not free: every step needs the prediction without the prompt as "
                "well as with it, so at 7.5 each call takes a batch of two latents", (30, 30)),
           Slip("unconditional at 1", "at exactly 1 the unconditional prediction cancels out of the formula, so "
                "`generate` skips it (section 2): one latent per call", (60, 60)),
           Slip("PNDM's count", "that is the count of PNDM, SD 1.5's default scheduler, which runs its first timestep "
                "twice; DDIM makes exactly one UNet call per step", (31, 62)),
           Slip("two calls a step", "twice too many at both scales: each step is one UNet call, and guidance puts the "
                "two halves in one batch", (60, 120))))


@functools.lru_cache(maxsize=1)
def shipped_pipe():
    "Chapter 5's own Stable Diffusion as shipped with course_lib, loaded once, on the CPU."
    from course_lib.own_sd import shipped_own_sd
    return shipped_own_sd("cpu")


def colour_accuracy(pipe, requests, scheduler, steps: int, guidance_scale: float) -> float:
    "How often `pipe` draws the colour each of `requests` asks for (seed i for request i), measured from the pixels."
    from course_lib.sampling import generate
    samples = generate(pipe, list(requests["prompt"]), guidance_scale=guidance_scale, num_inference_steps=steps,
                       scheduler=scheduler, output_type="pt", progress=False,
                       generator=[torch.Generator().manual_seed(i) for i in range(len(requests))])
    pixels = (samples.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    hits = (garment_colours(pixels) == torch.tensor(requests["colour"].values)).sum().item()
    return hits / len(requests)  # a count over n: exactly 0.95 for 95 of 100, no float32 rounding


def three_steps_accuracy(answer: dict) -> tuple[float, str]:
    "Colour accuracy of the shipped own SD on 100 held-out requests (seed 2) with `answer`'s sampler."
    from course_lib.own_sd import held_out_requests
    pipe = shipped_pipe()
    scheduler = make_scheduler(answer["scheduler"], pipe.scheduler.config)
    return (colour_accuracy(pipe, held_out_requests(100, seed=2), scheduler, answer["steps"],
                            answer["guidance_scale"]), "colour accuracy on 100 held-out requests")


THREE_STEPS = Exercise(
    "sampling.three_steps", "challenge", "the right colour in three steps",
    "Chapter 5's own Stable Diffusion (shipped with course_lib) draws the asked colour about 95 % of the time with 30 "
    "DDIM steps at guidance 3. With the same model, get the colour right on **at least 95 %** of 100 held-out "
    "requests in **at most 3 steps**. Answer with a dict `{\"scheduler\": ..., \"steps\": ..., \"guidance_scale\": "
    "...}` (a scheduler name of `make_scheduler`); the check draws the 100 garments on the CPU and measures each one's "
    "colour from its pixels (`garment_colours`), a few seconds.",
    reference={"scheduler": "dpm++", "steps": 3, "guidance_scale": 1.5}, measure=three_steps_accuracy, target=0.95,
    why="DDIM at 3 steps and guidance 3 gets the colour right only 39 % of the time: each big step carries the "
        "guided prediction far, and the colours come out wrong. Less guidance repairs most of it (DDIM at 1.25: 95 %), and "
        "DPM-Solver++, which uses the previous step's prediction too, does better still: 98 % at 3 steps and 1.5.",
    hints=("Start from DDIM at 3 steps and the chapter's guidance 3: how far short is it? Now try a lower scale.",
           "Few steps want less guidance. Then try the multistep solver of section 4's table."),
    slips=recipe_slips(3, 10, "with 10, DDIM at guidance 3 is already there"))

EXERCISES = {"ddim_step": DDIM_STEP, "guidance_cost": GUIDANCE_COST, "three_steps": THREE_STEPS}
