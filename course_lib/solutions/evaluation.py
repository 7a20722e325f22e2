"Chapter 1b's exercises (01b_evaluation): the Fréchet distance, FID's view of a one-class set, and a sampler tuned by FID."
import functools, warnings

import numpy as np
import scipy.linalg
import torch
from diffusers import UNet2DModel

from course_lib.conditioning import generate_from_class
from course_lib.data import fashion_tensors, load_offline_fashion
from course_lib.evaluation import FashionClassifier, class_accuracy, classifier_outputs, frechet_distance
from course_lib.exercises import Exercise, Slip
from course_lib.models import load_course_model, make_scheduler
from course_lib.solutions.rules import as_number, recipe_slips, valid_recipe
from course_lib.training import unit_images


def frechet(features_a, features_b):
    "The Fréchet distance d² between Gaussians fitted to two feature sets N×F: their means and covariances."
    mean_a, mean_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)  # F×F: features are columns
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real  # the matrix square root; rounding leaves tiny imaginary parts
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def frechet_inputs(seed: int) -> tuple:
    "Two sets of 100 correlated 8-wide features (float64), with different means and covariances."
    rng = np.random.default_rng(seed)
    draw = lambda: rng.normal(size=(100, 8)) @ rng.normal(size=(8, 8)) + rng.normal(size=8)
    return draw(), draw()


def same_number(expected: float, got) -> str | None:
    "A `compare` for one number: None if `got` is `expected` to 6 significant digits, else what differs."
    if isinstance(got, (complex, np.complexfloating)):
        return "your distance is a complex number: keep the real part of the matrix square root (`.real`)"
    if (value := as_number(got)) is None: return f"expected one number, got {type(got).__name__}"
    if abs(value - expected) <= 1e-6 * abs(expected): return None
    return f"{value:.6g} is not the distance: expected {expected:.6g} ({'too high' if value > expected else 'too low'})"


def frechet_slip(cov=lambda x: np.cov(x, rowvar=False), root=lambda a, b: scipy.linalg.sqrtm(a @ b).real,
                 mean_term=lambda d: (d ** 2).sum(), outer=lambda d2: d2):
    "A `frechet` with one thing wrong: the covariance, the square root, the mean term or what is returned."
    def wrong(features_a, features_b):
        cov_a, cov_b = cov(features_a), cov(features_b)
        with np.errstate(invalid="ignore"):  # an element-wise root of negative entries is NaN, off the diagonal only
            trace = np.trace(cov_a + cov_b - 2 * root(cov_a, cov_b))
        return float(outer(mean_term(features_a.mean(0) - features_b.mean(0)) + trace))
    return wrong


FRECHET = Exercise(
    "evaluation.frechet", "write", "the Fréchet distance",
    "Write `frechet(features_a, features_b)`: fit a Gaussian to each feature set (NumPy arrays N×F, one row per image) "
    "and return the Fréchet distance between them, d² = ‖μ_A − μ_B‖² + tr(Σ_A + Σ_B − 2 (Σ_A Σ_B)^½), as a float. "
    "Use `np.cov` for the covariances and `scipy.linalg.sqrtm` for the matrix square root, as `frechet_distance` "
    "does: the check compares yours with it on 100 × 8 features, to 6 significant digits.",
    reference=frechet, inputs=frechet_inputs, compare=same_number,
    why="μ and Σ are each set's mean and covariance over its rows (images), so Σ is F×F; the trace term compares the "
        "two spreads and the squared distance of the means their centres. (Σ_A Σ_B)^½ is a matrix square root: the "
        "matrix whose square is Σ_A Σ_B, not the root of each entry. FID is this d², not d.",
    hints=("`features.mean(0)` is the mean feature vector; `np.cov(features, rowvar=False)` treats columns as the "
           "variables, which gives the F×F covariance.",
           "`scipy.linalg.sqrtm(cov_a @ cov_b)` returns a complex array when rounding leaves tiny imaginary parts: "
           "keep its `.real`, then `np.trace` the whole bracket."),
    slips=(Slip("covariance of the images", "your covariances are N×N: `np.cov` treats each *row* as a variable "
                "unless you pass `rowvar=False`; here the rows are images and the variables are the F features",
                frechet_slip(cov=np.cov)),
           Slip("no matrix root", "you left out the square root: the trace term is tr(Σ_A + Σ_B − 2 (Σ_A Σ_B)^½), "
                "with `scipy.linalg.sqrtm(cov_a @ cov_b)`", frechet_slip(root=lambda a, b: a @ b)),
           Slip("element-wise root", "`np.sqrt` takes the root of each entry; (Σ_A Σ_B)^½ is the *matrix* square "
                "root, `scipy.linalg.sqrtm`", frechet_slip(root=lambda a, b: np.sqrt(a @ b))),
           Slip("product of roots", "Σ_A^½ Σ_B^½ is not (Σ_A Σ_B)^½ unless the two matrices commute: take the root of "
                "the product, `sqrtm(cov_a @ cov_b)`",
                frechet_slip(root=lambda a, b: scipy.linalg.sqrtm(a).real @ scipy.linalg.sqrtm(b).real)),
           Slip("mean distance not squared", "the mean term is the *squared* distance ‖μ_A − μ_B‖², the sum of the "
                "squared differences, not its square root", frechet_slip(mean_term=np.linalg.norm)),
           Slip("d, not d²", "you returned the square root of the result: FID is the squared distance d² itself",
                frechet_slip(outer=np.sqrt)),
           Slip("biased covariance", "your covariances divide by N; `np.cov`, and the reference FID code, divide by "
                "N − 1 (`bias=False`, the default)", frechet_slip(cov=lambda x: np.cov(x, rowvar=False, bias=True))),
           Slip("covariance not centred", "xᵀx / (N − 1) is the covariance only once the mean is subtracted: centre "
                "each feature first, or use `np.cov(features, rowvar=False)`",
                frechet_slip(cov=lambda x: x.T @ x / (len(x) - 1)))))


ONE_CLASS = Exercise(
    "evaluation.one_class", "predict", "the FID of perfect trousers",
    "The judge calls a real trouser a trouser. The cell after your answer takes 500 real test images that are all "
    "trousers, and 500 real test images of all ten classes, and measures each set's FID against 1,000 other test "
    "images. Predict how the trousers' FID compares with the mixed set's: 'a' about the same (within 2×), 'b' 2 to "
    "10 times higher, or 'c' more than 10 times higher. Answer with the letter.",
    reference="c",
    why="FID compares distributions, not images: the trousers' features gather in one region of the judge's feature "
        "space, far from the mean of all ten classes and with a far narrower spread, so both terms of the distance "
        "grow (about 80 times the mixed set's on the offline data). A model that draws perfect trousers only is "
        "obedient when asked for trousers, and FID still calls it poor: that is what it is for.",
    hints=("Which two things does the Fréchet distance compare? Are the trousers' mean and spread like the test "
           "set's?",),
    slips=(Slip("real images score well", "each trouser is a real image, but FID compares whole distributions: the "
                "trousers' features sit far from the ten-class mean and spread much less, and both terms of the "
                "distance grow", "a"),
           Slip("only a little worse", "more than that: a tenth of the test set's variety, in one corner of the "
                "feature space, moves both the mean term and the trace term by far more than the sampling noise of "
                "500 real images", "b")))


@functools.lru_cache(maxsize=1)
def shipped_models_and_reference() -> tuple:
    "The shipped class UNet and judge (CPU), and the judge's features of the 10,000 offline test images, loaded once."
    model, judge = load_course_model("class-unet", UNet2DModel, "cpu"), load_course_model("judge", FashionClassifier, "cpu")
    images, _ = fashion_tensors(load_offline_fashion("test"), "cpu")
    return model, judge, classifier_outputs(judge, unit_images(images))[1]


@functools.lru_cache(maxsize=4)
def sampled(scheduler: str, steps: int, guidance_scale: float) -> tuple[float, float]:
    "(class accuracy, FID) of 100 garments, 10 per class (seed 0), that the shipped UNet draws with this sampler."
    model, judge, reference = shipped_models_and_reference()
    samples = generate_from_class(model, make_scheduler(scheduler), range(10), 10, guidance_scale=guidance_scale,
                                  num_inference_steps=steps, generator=torch.Generator().manual_seed(0), progress=False)
    accuracy = class_accuracy(judge, samples, torch.arange(10).repeat_interleave(10))
    return accuracy, frechet_distance(classifier_outputs(judge, samples)[1], reference)


def settings_of(answer: dict) -> tuple:
    return answer["scheduler"], answer["steps"], float(answer["guidance_scale"])


def measured_fid(answer: dict) -> tuple[float, str]:
    return sampled(*settings_of(answer))[1], "FID of 100 garments against the 10,000 test images"


def disobedient(answer, expected=None) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return valid_recipe(answer, 10) and sampled(*settings_of(answer))[0] < 0.9


FID_TARGET = Exercise(
    "evaluation.fid_target", "challenge", "varied and obedient in ten steps",
    "With the shipped class UNet and **at most 10 sampler steps**, find a sampler and guidance scale whose garments "
    "the judge finds to be the asked class at least 90 % of the time, with an FID of **at most 125**. Answer with a "
    "dict `{\"scheduler\": ..., \"steps\": ..., \"guidance_scale\": ...}` (a scheduler name of `make_scheduler`); the "
    "check samples 100 garments, 10 of each class (seed 0), and measures their class accuracy and their FID against "
    "the 10,000 test images with the shipped judge (about 10 s on 2 cores, a few more the first time). FID grows as "
    "the sample count falls: compare it only with this check's own figures.",
    reference={"scheduler": "ddim", "steps": 10, "guidance_scale": 2.75}, measure=measured_fid, target=125,
    lower_is_better=True,
    why="DDIM at 10 steps and guidance 2.75 draws the asked class 97 % of the time at an FID of 115; the sweep's "
        "sweet spot, scale 3, also passes (FID 120). Less guidance loses obedience or, at few steps, realism "
        "(scale 2: FID 157), and more guidance loses variety (scale 5: FID 271, SD's 7.5: FID 498); 5 steps cost "
        "realism too (scale 3: FID 182). PNDM gets a lower FID at 2.5 but draws the asked class only 84 % of the time.",
    hints=("Start from the sweep's sweet spot at 10 DDIM steps: which side of 125 is it, and which way does FID move "
           "with guidance?",
           "Try guidance scales a quarter apart around the sweet spot; keep an eye on class accuracy as you lower it."),
    slips=recipe_slips(10, 20, "at 20 steps the sweet spot gets there easily") + (
           Slip("not obedient", "with these settings the judge finds the asked class in fewer than 90 % of the 100 "
                "garments: a low FID does not count if the class is ignored. Raise the guidance scale, or try "
                "another sampler", {"scheduler": "ddim", "steps": 10, "guidance_scale": 1.0}, disobedient),))

EXERCISES = {"frechet": FRECHET, "one_class": ONE_CLASS, "fid_target": FID_TARGET}
