"Chapter 5b's exercises (05b_pattern_words): the Min-SNR weight, where the error sits, and a γ for the middle band."
import functools

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from course_lib.exercises import Exercise, Slip
from course_lib.models import FASHION_SCHEDULE
from course_lib.solutions.rules import absolute_difference, is_number, number_in


def min_snr_weights(alphas_cumprod, timesteps, snr_gamma):
    "The Min-SNR-γ weight min(SNR, γ)/SNR of each of `timesteps`, with SNR = ᾱ/(1 − ᾱ) from `alphas_cumprod`."
    alpha_bar = alphas_cumprod[timesteps]
    snr = alpha_bar / (1 - alpha_bar)  # the signal's power over the noise's, in the noisy latent
    return snr.clamp(max=snr_gamma) / snr


def weight_inputs(seed: int) -> tuple:
    "The course's schedule (even seeds) or a cosine one (odd), 16 random timesteps, and a γ of 1, 5 or 20."
    schedule = FASHION_SCHEDULE if seed % 2 == 0 else {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    timesteps = torch.randint(0, 1000, (16,), generator=torch.Generator().manual_seed(seed))
    return DDPMScheduler(**schedule).alphas_cumprod, timesteps, (5.0, 1.0, 20.0)[seed % 3]


def weights_from(snr_of):
    "A slip's answer: the Min-SNR weight with the SNR computed by `snr_of(alpha_bar)`."
    def weights(alphas_cumprod, timesteps, snr_gamma):
        snr = snr_of(alphas_cumprod[timesteps])
        return snr.clamp(max=snr_gamma) / snr
    return weights


MIN_SNR_WEIGHTS = Exercise(
    "pattern_words.min_snr_weights", "write", "the Min-SNR-γ weight",
    "Section 4 weighs each timestep's squared error by min(SNR, γ)/SNR, where SNR = ᾱ/(1 − ᾱ) is the noisy latent's "
    "signal-to-noise ratio at that timestep (ᾱ is the scheduler's `alphas_cumprod` there). Write "
    "`min_snr_weights(alphas_cumprod, timesteps, snr_gamma)`: `alphas_cumprod` holds ᾱ for every timestep (a 1-D "
    "tensor, e.g. `DDPMScheduler(...).alphas_cumprod`), `timesteps` is a 1-D tensor of integer timesteps, `snr_gamma` "
    "a number; return the weight of each timestep, a tensor shaped like `timesteps`.",
    reference=min_snr_weights, inputs=weight_inputs,
    why="`x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε`: the signal's power is ᾱ and the noise's 1 − ᾱ, so SNR = ᾱ/(1 − ᾱ). Where it "
        "is above γ (the near-clean timesteps) the weight γ/SNR is below 1; elsewhere it is exactly 1. It is what "
        "diffusers' `compute_snr` and its training scripts' `--snr_gamma` compute.",
    hints=("`alphas_cumprod[timesteps]` picks ᾱ at each timestep, in one go.",
           "`snr.clamp(max=snr_gamma)` is min(SNR, γ), element by element."),
    slips=(Slip("SNR upside down", "you divided the noise by the signal: SNR = ᾱ/(1 − ᾱ), large near t = 0 where the "
                "latent is almost clean, small near t = 999", weights_from(lambda a: (1 - a) / a)),
           Slip("amplitudes, not powers", "you took √ᾱ/√(1 − ᾱ), the ratio of the amplitudes; the SNR compares "
                "powers: ᾱ/(1 − ᾱ), no square roots", weights_from(lambda a: a.sqrt() / (1 - a).sqrt())),
           Slip("not divided by SNR", "min(SNR, γ) alone weighs the noisy timesteps almost to zero and the clean ones "
                "up to γ: divide by SNR, so that the weight is 1 wherever SNR ≤ γ",
                lambda a, t, g: (a[t] / (1 - a[t])).clamp(max=g)),
           Slip("no min", "γ/SNR alone weighs the noisy timesteps far above 1 (SNR is tiny there): take min(SNR, γ) "
                "first, so that no weight is above 1", lambda a, t, g: g / (a[t] / (1 - a[t])))))


NEAR_CLEAN_SHARE = Exercise(
    "pattern_words.near_clean_share", "predict", "where the error sits",
    "The next cell measures the shipped UNet's plain squared error on 64 held-out garments at 25 timesteps spread "
    "evenly, t = 10, 50, ..., 970, as training draws them, and sums it. The first three, t = 10, 50 and 90, are the "
    "near-clean eighth of them (below t = 130, where Min-SNR-5 weighs less). Predict: what percentage of the summed "
    "error do those three hold?",
    reference=67, compare=absolute_difference(12),
    why="Near t = 0 the noisy latent is almost the clean one and the noise in it is tiny: reading it off exactly is "
        "nearly impossible, and the error stays large however long the model trains (0.41 at t = 10 against 5e-4 at "
        "970). So three timesteps of 25 hold about 67 % of the error, and the optimizer, which follows the sum, "
        "spends most of each step there.",
    hints=("Which is harder: to tell the noise in a latent that is 99 % garment, or in one that is 99 % noise?",
           "Near t = 999 the latent is almost pure noise, so predicting the noise is almost copying the input."),
    slips=(Slip("an even share", "three timesteps of 25 would hold 12 % if every timestep's error were alike; they are "
                "not: the near-clean ones are the hardest to read the noise from", 12, number_in(5, 25)),
           Slip("the noisy end", "the noisier the latent, the easier its noise is to predict (at t = 970 the latent "
                "is almost all noise): the near-clean timesteps hold the most error, not the least", 2,
                number_in(0, 5)),
           Slip("all of it", "the other 22 timesteps still hold a share: near-clean holds most, not all", 99,
                number_in(95, 100))))


@functools.lru_cache(maxsize=1)
def shipped_losses():
    "`timestep_losses` of the shipped own SD on 64 held-out garments at t = 10, 50, ..., 970: as section 4 measures."
    from course_lib.colour_fashion import colour_captions, colour_tensors, load_colour_fashion
    from course_lib.own_sd import colour_unit_images, shipped_own_sd
    from course_lib.pattern_words import timestep_losses
    test = colour_tensors(load_colour_fashion("test"))
    captions = colour_captions(test["label"][:64], test["colour"][:64], test["pattern"][:64], "train", seed=0)
    return timestep_losses(shipped_own_sd("cpu"), colour_unit_images(test["images"][:64]), captions,
                           timesteps=range(10, 1000, 40))


def band_share(snr_gamma) -> tuple[float, str]:
    "The share of the Min-SNR-weighted error that the timesteps 300 to 700 hold, with `snr_gamma` as γ."
    losses = shipped_losses()
    weighted = losses["loss"] * losses["SNR"].clip(upper=snr_gamma) / losses["SNR"]
    return (weighted.loc[300:700].sum() / weighted.sum()).item(), "share of the weighted error at t = 300 to 700"


SNR_AT_300 = compute_snr(DDPMScheduler(**FASHION_SCHEDULE), torch.tensor([300])).item()  # 0.650, read to 2 decimals

BAND_GAMMA = Exercise(
    "pattern_words.band_gamma", "challenge", "a γ for the middle band",
    "With γ = 5 the middle band, t = 300 to 700, holds 27 % of the weighted error (plain MSE: 11 %). Choose a γ "
    "(`snr_gamma`, a positive number) for which it holds **at least half**, without weighing the band itself down: "
    "every timestep from 300 on keeps the weight 1. The check weighs section 4's measured errors of the shipped "
    "model with your γ.",
    reference=round(SNR_AT_300, 2), measure=band_share, target=0.5,
    why="A smaller γ weighs more of the near-clean timesteps down, and further, so the band's share grows; but once γ "
        f"falls below the SNR at t = 300 ({SNR_AT_300:.2f}), the band's first timesteps are weighed down too. The best "
        "γ for the band is its edge's SNR: there the band holds 53 % of the weighted error. Hang et al. chose γ = 5 "
        "for their schedules; what a γ does depends on the schedule's SNRs, which the `SNR` column of "
        "`timestep_losses` shows.",
    hints=("A timestep's weight is 1 while its SNR is at most γ: which timestep of the band has the largest SNR?",
           "`losses['SNR']` in section 4 holds the SNR of each timestep measured; "
           "`compute_snr(DDPMScheduler(**FASHION_SCHEDULE), torch.tensor([300]))` gives the one at t = 300."),
    slips=(Slip("not a γ", "answer with one positive number, the γ of Min-SNR-γ", "five",
                lambda answer, _: not (is_number(answer) and answer > 0)),
           Slip("the band weighed down", f"with γ below the SNR at t = 300 ({SNR_AT_300:.2f}) the band's own first "
                "timesteps weigh less than 1 too, which the challenge rules out. Take the smallest γ that still "
                "leaves t = 300 its full weight", 0.1,
                lambda answer, _: is_number(answer) and 0 < answer < SNR_AT_300 - 0.01)))

EXERCISES = {"min_snr_weights": MIN_SNR_WEIGHTS, "near_clean_share": NEAR_CLEAN_SHARE, "band_gamma": BAND_GAMMA}
