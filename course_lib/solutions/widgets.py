"Chapter 4b's exercises (04b_widgets): a seed's starting noise, what the panel recomputes, sandals and not boots."
import functools

import torch

from course_lib.colour_fashion import PALETTE, garment_colours
from course_lib.exercises import Exercise, Slip
from course_lib.models import SD15_SCHEDULER, make_scheduler
from course_lib.solutions.rules import breaks, is_number, pair_difference



@functools.lru_cache(maxsize=1)
def euler_init_noise_sigma() -> float:
    "The spread Euler starts from on SD 1.5's schedule with 20 steps (about 11): √(σ_max² + 1)."
    scheduler = make_scheduler("euler", SD15_SCHEDULER); scheduler.set_timesteps(20)
    return float(scheduler.init_noise_sigma)


def starting_latents(seed, shape, init_noise_sigma):
    "The latents `generate(..., seed=seed)` starts from: Gaussian noise from a CPU generator seeded with `seed`, scaled."
    generator = torch.Generator("cpu").manual_seed(seed)  # one generator for the whole batch, as `generate` makes it
    return torch.randn(shape, generator=generator) * init_noise_sigma


def latents_inputs(seed: int) -> tuple:
    "A seed from the seed box's range, a batch of two 4×16×16 latents, and the scheduler's `init_noise_sigma`."
    g = torch.Generator().manual_seed(seed)
    return (int(torch.randint(0, 2**32, (1,), generator=g)), (2, 4, 16, 16),
            (euler_init_noise_sigma(), 1.0, 7.5)[seed % 3])


def unseeded_noise(got, expected) -> bool:
    "Values differ but their mean and spread match: Gaussian noise of the right scale, not the seed's."
    spread = expected.std()  # over 2,048 values: means within ±0.03σ of each other, spreads within ±2 % (1 sd)
    return bool(abs(got.mean() - expected.mean()) < 0.25 * spread and abs(got.std() / spread - 1) < 0.15)


def latents_slip(draw=torch.randn, scaled=True, per_image=None):
    "A `starting_latents` with one thing wrong: the distribution, the scale, or how the images of the batch are drawn."
    def wrong(seed, shape, init_noise_sigma):
        scale = init_noise_sigma if scaled else 1.0
        if per_image is None: return draw(shape, generator=torch.Generator().manual_seed(seed)) * scale
        return torch.cat([draw((1, *shape[1:]), generator=torch.Generator().manual_seed(per_image(seed, i)))
                          for i in range(shape[0])]) * scale
    return wrong


STARTING_LATENTS = Exercise(
    "widgets.starting_latents", "write", "a seed's starting noise",
    "The panel's seed box promises: same seed, same picture. What a seed decides is the noise the sampling starts "
    "from. Write `starting_latents(seed, shape, init_noise_sigma)`: the latents `generate(..., seed=seed)` starts from "
    "for a batch of `shape` (B×4×h×w): Gaussian noise drawn, all of it at once, from a CPU `torch.Generator` seeded "
    "with `seed`, times the scheduler's `init_noise_sigma` (1 for DDIM and PNDM, about 11 for Euler with 20 "
    "steps on SD's schedule). It is chapter 4's `prepare_latents`, with the generator `make_generator(seed)` gives it.",
    reference=starting_latents, inputs=latents_inputs,
    why="A seeded generator yields the same numbers in the same order on every machine, so the same seed gives the "
        "same noise, and with it the same picture; drawing the whole batch from one generator gives each image its "
        "own noise. The scale is the scheduler's: Euler-type schedulers start from noise of spread σ_max, not 1.",
    hints=("`torch.Generator(\"cpu\").manual_seed(seed)` makes the generator; pass it to the draw as "
           "`generator=`.",
           "One `torch.randn(shape, generator=...)` for the whole batch, then the scale."),
    slips=(Slip("uniform noise", "torch.rand draws uniform noise in [0, 1), with mean 0.5: the starting latents are "
                "Gaussian, torch.randn", latents_slip(draw=torch.rand),
                lambda got, expected: (got - expected).mean() > 0.25 * expected.std()),  # 0.5σ, not 0 (±0.03σ)
           Slip("not scaled", "right noise, wrong spread: multiply by `init_noise_sigma`; Euler-type schedulers start "
                "from noise about 11 times wider than DDIM's (SD's schedule, 20 steps)", latents_slip(scaled=False)),
           Slip("same noise per image", "every image of the batch got the same noise, so a batch of one prompt would "
                "give copies of one picture: draw the whole batch from one generator, in one call",
                latents_slip(per_image=lambda seed, i: seed)),
           Slip("a generator per image", "a list of generators, one per image (seed + i), is a choice chapter 5 "
                "makes, but not what `generate(..., seed=seed)` does: it makes one generator and draws the whole "
                "batch from it", latents_slip(per_image=lambda seed, i: seed + i)),
           Slip("noise not from the seed", "your noise is Gaussian but not the seed's: draw it with "
                "`generator=torch.Generator(\"cpu\").manual_seed(seed)`, so that the same seed gives the same pixels",
                latents_slip(draw=lambda shape, generator: torch.randn(shape)), unseeded_noise)))


PANEL_COUNTS = Exercise(
    "widgets.panel_counts", "predict", "what the panel recomputes",
    "The cell after this one builds a fresh panel (seed 0, guidance 2, 5 steps), which draws its first picture. Then it sets the "
    "seed box to 1, then to 2; moves the \"keep last\" slider from 4 to 1; sets the prompt to another prompt, and "
    "then back to the first one. Predict `(panel.draws, panel.encodes)` at the end: how many pictures were drawn, and how many times the "
    "text encoder ran.",
    reference=(5, 2), compare=pair_difference(("draws", "encodes"), "a pair of whole numbers, (draws, encodes)"),
    why="The first picture, two seeds and two prompt changes draw 5 pictures; \"keep last\" only trims the history "
        "row. The text encoder runs once per (prompt, negative prompt) pair: the first prompt, the other one, and "
        "none for the way back, which the cache answers.",
    hints=("Which controls are in `PICTURE_CONTROLS`, and what does \"keep last\" observe instead?",
           "`embeddings` keys its cache on the (prompt, negative prompt) pair."),
    slips=(Slip("keep last draws", "moving \"keep last\" draws nothing: it only trims the history row "
                "(`show_history`), the picture stays", (6, 2)),
           Slip("first picture", "one too few: count the first picture, drawn when the panel is built, and the way "
                "back to the first prompt, which draws again (the cache saves the text encoder, not the sampling)",
                (4, 2)),
           Slip("no cache", "the way back to the first prompt finds its embeddings in the cache: the text encoder "
                "runs once per (prompt, negative prompt) pair, 2 here", (5, 3)),
           Slip("encoder per picture", "the text encoder does not run for every picture: seed changes reuse the "
                "cached embeddings of the prompt pair", (5, 5)),
           Slip("new prompt cached", "a prompt the panel has not seen must be encoded once: the cache only answers "
                "pairs it holds", (5, 1))))


@functools.lru_cache(maxsize=1)
def sandal_judges() -> tuple:
    "The shipped own SD and chapter 1b's judge, loaded once, on the CPU."
    from course_lib.evaluation import FashionClassifier
    from course_lib.models import load_course_model
    from course_lib.own_sd import shipped_own_sd
    return shipped_own_sd("cpu"), load_course_model("judge", FashionClassifier, "cpu")


SANDAL = 5  # FASHION_CLASSES' "Sandal"


def sandal_hits(answer: dict, n: int = 100) -> tuple[float, str]:
    "How many of `n` requests \"a <colour> sandal\" (each colour in turn, seed i) give a sandal in the asked colour."
    from course_lib.evaluation import classifier_outputs
    from course_lib.own_sd import garment_gray
    from course_lib.sampling import generate
    pipe, judge = sandal_judges()
    colours = [i % len(PALETTE) for i in range(n)]
    samples = generate(pipe, [f"a {list(PALETTE)[c]} sandal" for c in colours], answer["negative_prompt"],
                       guidance_scale=answer["guidance_scale"], num_inference_steps=20, output_type="pt",
                       progress=False, generator=[torch.Generator().manual_seed(i) for i in range(n)])
    is_sandal = classifier_outputs(judge, garment_gray(samples))[0] == SANDAL
    right_colour = garment_colours((samples.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)) == torch.tensor(colours)
    return (is_sandal & right_colour).sum().item() / n, f"share of {n} requests drawn as sandals in the asked colour"


def malformed(answer, expected=None) -> bool:
    return not (isinstance(answer, dict) and {"guidance_scale", "negative_prompt"} <= set(answer))


SANDALS = Exercise(
    "widgets.sandals", "challenge", "sandals, not boots",
    "Ask the own SD for \"a red sandal\" and it often draws an ankle boot: at guidance 3, the scale of its card, "
    "only 49 of 100 requests \"a <colour> sandal\" (each of the ten colours, ten seeds) come out as a sandal in the "
    "asked colour, and the judge calls a quarter of them boots. Use the panel (prompt \"a red sandal\", other colours, new seeds; "
    "the guidance slider and the negative box) to find a guidance scale and a negative prompt that make **at least "
    "65 %** of them sandals in the asked colour. Answer with a dict `{\"guidance_scale\": ..., \"negative_prompt\": "
    "...}`; the check draws the 100 with 20 DDIM steps, chapter 1b's judge names each class, and `garment_colours` "
    "measures each colour (a few seconds).",
    reference={"guidance_scale": 2.0, "negative_prompt": "an ankle boot"}, measure=sandal_hits, target=0.65,
    why="Guidance pushes away from what the negative prompt draws. With \"\" that is any garment; with \"an ankle "
        "boot\" it is the very class the model confuses sandals with, so at guidance 2 the judge finds a sandal 91 "
        "times in 100 (54 without it) and 73 are sandals in the asked colour. Higher scales keep the sandals but "
        "wash the colours out (at 5: 93 sandals, 48 in the asked colour).",
    hints=("What does the model draw when it misses? Look at the pictures the panel keeps in its history.",
           "Guidance moves away from the negative prompt: name the garment you do not want.",
           "Then lower the guidance until the colours come back."),
    slips=(Slip("not a dict", "answer with a dict with the keys 'guidance_scale' and 'negative_prompt'",
                {"guidance_scale": 2.0}, malformed),
           Slip("off the slider", "the guidance scale must be a number on the panel's slider, from 0 to 15",
                {"guidance_scale": 40.0, "negative_prompt": ""},
                breaks(lambda answer: not (is_number(answer["guidance_scale"]) and 0 <= answer["guidance_scale"] <= 15),
                       malformed)),
           Slip("negative not a prompt", "the negative prompt must be one string, as in the panel's box ('' for "
                "none)", {"guidance_scale": 2.0, "negative_prompt": ["a boot"]},
                breaks(lambda answer: not isinstance(answer["negative_prompt"], str), malformed))))

EXERCISES = {"starting_latents": STARTING_LATENTS, "panel_counts": PANEL_COUNTS, "sandals": SANDALS}
