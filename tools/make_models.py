"""Retrain every model the course ships, from scratch, and write them into course_lib/pretrained/ with model cards.

    python tools/make_models.py [--preset cpu] [--cache-dir DIR] [--only NAME ...] [--out course_lib/pretrained]

`make models` runs this. Each model is trained from scratch by its chapter's own function with the named preset (the
cpu presets by default, about three quarters of an hour on 2 CPU cores; on a GPU pass --preset gpu): chapter 1's
class-conditioned UNet, chapter 1b's judge, chapter 2's Fashion VAE and its latent UNet, chapter 3's CLIP towers,
chapter 5's own Stable Diffusion (its colour VAE and UNet; its text encoder is the CLIP towers' text tower, stored
once, in own-sd, so the two retrain together).
--cache-dir names where the colour judges used for measuring are kept (default: a fresh folder). Each goes to
<out>/<name>/ in fp16 safetensors as a `save_pretrained` folder, with `course_model.json` (preset, steps, seconds,
device, data fingerprint, figures) and a model card, README.md. The figures measured on each model are printed and
written to the card.
"""
import argparse, copy, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import diffusers
import torch
from diffusers import AutoencoderKL, UNet2DModel
from transformers import CLIPModel

from course_lib.conditioning import generate_from_class, make_class_unet, class_run_settings, train_class_conditioned
from course_lib.core import settings
from course_lib.data import fashion_tensors, load_fashion_mnist
from course_lib.colour_fashion import colour_tensors, load_colour_fashion
from course_lib.evaluation import FashionClassifier, class_accuracy, train_classifier
from course_lib.latent_diffusion import (encode_fashion, generate_latent_class, make_fashion_vae, make_latent_unet,
                                         reconstruction_psnr, train_vae)
from course_lib.models import (COURSE_MODELS, PRETRAINED_DIR, course_model_facts, load_clip_tokenizer,
                               load_course_model, make_scheduler)
from course_lib.own_sd import (attribute_hits, colour_judges, held_out_requests, make_colour_vae, make_text_unet,
                               own_sd_pipeline, save_compact_pipeline, shipped_own_sd, train_colour_vae,
                               train_text_unet, vae_psnr)
from course_lib.sampling import generate
from course_lib.text_encoders import make_clip_towers, text_tower, train_clip_towers, zero_shot_table
from course_lib.training import data_fingerprint, preset_values

RETRAIN = "make models"
SHARED_TEXT_TOWER = {"text_model.": "own-sd/text_encoder/model.safetensors"}  # clip-towers' text tower, stored once
TRAINED_TOGETHER = ("clip-towers", "own-sd")  # one text tower: retrained and written together
USAGES = {  # the card's "Load it with" code of each model
    "judge": 'from course_lib.evaluation import FashionClassifier\nfrom course_lib.models import load_course_model\n'
             'judge = load_course_model("judge", FashionClassifier)',
    "class-unet": 'from diffusers import UNet2DModel\nfrom course_lib.models import load_course_model\n'
                  'model = load_course_model("class-unet", UNet2DModel)',
    "fashion-vae": 'from diffusers import AutoencoderKL\nfrom course_lib.models import load_course_model\n'
                   'vae = load_course_model("fashion-vae", AutoencoderKL)',
    "latent-unet": 'from diffusers import AutoencoderKL, UNet2DModel\nfrom course_lib.models import load_course_model\n'
                   'vae = load_course_model("fashion-vae", AutoencoderKL)  # its latents are what this UNet draws\n'
                   'model = load_course_model("latent-unet", UNet2DModel)',
    "clip-towers": 'from transformers import CLIPModel\nfrom course_lib.models import load_course_model\n'
                   'towers = load_course_model("clip-towers", CLIPModel)',
    "own-sd": "from diffusers import StableDiffusionPipeline\nfrom course_lib.models import course_model_folder\n"
              "pipe = StableDiffusionPipeline.from_pretrained(course_model_folder(\"own-sd\"))  # or any copy of it\n"
              "# or: from course_lib.own_sd import shipped_own_sd; pipe = shipped_own_sd()"}


def timed_record(train_call) -> dict:
    "The record of `train_call()`, its seconds the whole call's: the UNet's include encoding its garments into latents."
    start = time.perf_counter()
    return train_call() | {"seconds": time.perf_counter() - start}


def device_name() -> str:
    if torch.cuda.is_available(): return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def training_line(facts: dict) -> str:
    "The card's line on training: the steps and seconds, of each part for a model trained in parts, and the machine."
    machine = f"on {facts['device']} (torch {facts['torch']})."
    if "parts" not in facts: return f"{facts['steps']:,} steps in {facts['seconds']:.0f} s {machine}"
    parts = "; ".join(f"{name}: {part['steps']:,} steps in {part['seconds']:.0f} s"
                      + (" (kept, from its own card)" if part.get("retrained") is False else "")
                      for name, part in facts["parts"].items())
    return f"{parts}. All parts: {facts['seconds'] / 60:.1f} min {machine}"


def write_card(folder: Path, facts: dict):
    "Write `facts` to `folder`/course_model.json and the model card README.md."
    (folder / "course_model.json").write_text(json.dumps(facts, indent=1) + "\n")
    figures = "\n".join(f"- {k}: {v}" for k, v in facts["figures"].items())
    only = " ".join(TRAINED_TOGETHER) if facts["name"] in TRAINED_TOGETHER else facts["name"]
    shared = "".join(f"\nIts `{prefix}*` weights are stored once, in `{source}` (`load_course_model` puts them in).\n"
                     for prefix, source in facts.get("shares", {}).items())
    (folder / "README.md").write_text(f"""# {facts['name']}: {facts['what']}

Trained by the course itself, shipped inside `course_lib` in fp16. Load it with:

```python
{facts['usage']}
```
{shared}
## Recipe
The `{facts['preset']}` preset of `course_lib/settings.ini`:

```json
{json.dumps(facts['recipe'], indent=1)}
```

## Retrain
`{RETRAIN}` (all course models, from scratch; `python tools/make_models.py --only {only}` for this one).

## Data
{facts['data']}

## Training
{training_line(facts)}

## Measured on this model
{figures}
""")
    print(f"{facts['name']}:\n  " + "\n  ".join(f"{k}: {v}" for k, v in facts["figures"].items()), flush=True)


def write_model(out: Path, name: str, save, facts: dict):
    "Save a model with `save(folder)` into `out`/`name` (written beside it, then renamed), with its facts and card."
    folder, tmp = out / name, Path(tempfile.mkdtemp(dir=out, prefix=f".{name}."))
    try:
        save(tmp)
        write_card(tmp, {"name": name, "what": COURSE_MODELS[name], "command": RETRAIN, "torch": torch.__version__,
                         "usage": USAGES[name]} | facts)
        for path in tmp.rglob("*"): path.chmod(0o755 if path.is_dir() else 0o644)  # some savers write 0600
        tmp.chmod(0o755)
        if folder.exists(): shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise
    print(f"  {sum(f.stat().st_size for f in folder.rglob('*') if f.is_file()) / 1e6:.1f} MB -> {folder}", flush=True)


def own_sd_figures(pipe, colour_test: dict, seconds: float, cache_dir=None) -> dict:
    "What the card of own-sd reports: the VAE's PSNR, the training time, and the attributes drawn at guidance 3."
    judges, requests = colour_judges(shipped_judge(), progress=False, cache_dir=cache_dir), held_out_requests(100)
    samples = generate(pipe, list(requests["prompt"]), guidance_scale=3.0, num_inference_steps=30, output_type="pt",
                       generator=[torch.Generator().manual_seed(i) for i in range(100)], progress=False)
    hits, sampler = attribute_hits(samples, requests, judges).mean(), type(pipe.scheduler).__name__
    psnr = vae_psnr(pipe.vae, colour_test['images'][:2000])
    return {"held-out PSNR of the colour VAE (2,000 test garments)": f"{psnr:.2f} dB",
            "training time, VAE + CLIP + UNet": f"{seconds / 60:.1f} min",
            **{f"{k} accuracy at guidance 3 (100 held-out prompts, 30 steps of its {sampler}; class by the shipped "
               f"judge, pattern by its recipe trained on patterns, colour measured)": f"{v:.0%}"
               for k, v in hits.items()}}


def as_shipped(model):
    """A copy of `model` (or pipeline) with its weights rounded to fp16 and back: what its card measures is what ships
    (in fp16), not the fp32 run."""
    return copy.deepcopy(model).to(torch.float16).to(torch.float32)


def judge_figures(judge, test_images, test_labels) -> dict:
    accuracy = class_accuracy(judge, torch.nn.functional.pad(test_images[:, None], (2, 2, 2, 2)).float() / 255,
                              test_labels)
    return {"test accuracy (10,000 held-out images)": f"{accuracy:.2%}"}


def fashion_vae_figures(vae, test_images) -> dict:
    return {"held-out PSNR (10,000 test images, mean latent)": f"{reconstruction_psnr(vae, test_images):.2f} dB",
            "scaling factor (SD's rule, measured on the training images)": f"{vae.config.scaling_factor:.4f}"}


def clip_towers_figures(towers, tokenizer, colour_test) -> dict:
    zero_shot = zero_shot_table(towers, tokenizer, colour_test)
    return {f"zero-shot {a} accuracy (1,000 held-out garments)": f"{v:.1%}"
            for a, v in zip(zero_shot["attribute"], zero_shot["zero-shot accuracy"])}


def remeasure(out: Path, names: list, cache_dir=None):
    "Measure the shipped models `names` again, from their fp16 weights, and rewrite their cards' figures."
    fashion_test = fashion_tensors(load_fashion_mnist("test", verbose=False))
    for name in names:
        folder = out / name
        facts = json.loads((folder / "course_model.json").read_text())
        if name == "judge": figures = judge_figures(shipped_judge(), *fashion_test)
        elif name == "class-unet": figures = class_unet_figures(load_course_model(name, UNet2DModel), shipped_judge())
        elif name == "fashion-vae":
            figures = fashion_vae_figures(load_course_model(name, AutoencoderKL), fashion_test[0])
        elif name == "latent-unet":
            figures = latent_unet_figures(load_course_model(name, UNet2DModel),
                                          load_course_model("fashion-vae", AutoencoderKL), shipped_judge())
        elif name == "clip-towers":
            figures = clip_towers_figures(load_course_model(name, CLIPModel), load_clip_tokenizer(verbose=False),
                                          colour_tensors(load_colour_fashion("test")))
        else:
            figures = own_sd_figures(shipped_own_sd(), colour_tensors(load_colour_fashion("test")), facts["seconds"],
                                     cache_dir)
        write_card(folder, {"usage": USAGES[name]} | facts | {"figures": figures})


def class_unet_figures(model, judge, n_per_class: int = 50) -> dict:
    "What the card of class-unet reports: the judge's class accuracy on its samples at guidance 1 and 3 (DDIM 50)."
    figures, labels = {}, torch.arange(10).repeat_interleave(n_per_class)
    for scale in (1, 3):
        samples = generate_from_class(model, make_scheduler("ddim"), list(range(10)), n_per_class,
                                      guidance_scale=scale, num_inference_steps=50,
                                      generator=torch.Generator().manual_seed(0), progress=False)
        figures[f"class accuracy at guidance {scale} ({10 * n_per_class} samples, DDIM 50, by the shipped judge)"] = \
            f"{class_accuracy(judge, samples, labels):.1%}"
    return figures


def latent_unet_figures(model, vae, judge, n_per_class: int = 50) -> dict:
    """What the card of latent-unet reports: the judge's class accuracy on its decoded samples at guidance 3, as
    class-unet's."""
    labels = torch.arange(10).repeat_interleave(n_per_class)
    samples = generate_latent_class(model, vae, make_scheduler("ddim", clip_sample=False), list(range(10)),
                                    n_per_class, guidance_scale=3, num_inference_steps=50,
                                    generator=torch.Generator().manual_seed(0), progress=False)
    return {f"class accuracy at guidance 3 ({10 * n_per_class} decoded samples, DDIM 50, by the shipped judge)":
            f"{class_accuracy(judge, samples, labels):.1%}"}


def shipped_judge():
    "Chapter 1b's judge as shipped (the one this run wrote, if it trained one)."
    return load_course_model("judge", FashionClassifier)


def half(model):
    """Save `model` in fp16 (diffusers' note that `to(dtype)` may differ from loading in a dtype is about models that
    keep some modules in fp32; these have none)."""
    def save(folder):
        diffusers.utils.logging.set_verbosity_error()
        model.to(torch.float16).save_pretrained(folder)
        diffusers.utils.logging.set_verbosity_warning()
    return save


def half_sharing(towers, shares: dict):
    "Save `towers` in fp16 without the weights `shares` names (their prefixes), which another course model holds."
    def save(folder):
        stored = copy.deepcopy(towers).to(torch.float16)
        kept = {k: v for k, v in stored.state_dict().items() if not k.startswith(tuple(shares))}
        stored.save_pretrained(folder, state_dict=kept)
    return save


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--only", nargs="*", choices=list(COURSE_MODELS), default=list(COURSE_MODELS))
    parser.add_argument("--out", default=str(PRETRAINED_DIR))
    parser.add_argument("--keep-towers", action="store_true",
                        help="train own-sd on the shipped CLIP towers instead of retraining both (their card's steps "
                             "and seconds are counted in own-sd's time, and clip-towers is left as it is)")
    parser.add_argument("--remeasure", nargs="+", choices=list(COURSE_MODELS), metavar="NAME",
                        help="measure these shipped models again, from their fp16 weights, "
                             "and rewrite their cards' figures")
    args = parser.parse_args()
    if len(set(TRAINED_TOGETHER) & set(args.only)) == 1 and not args.keep_towers:
        parser.error("clip-towers and own-sd share one text tower (stored in own-sd): retrain them together, "
                     "--only clip-towers own-sd")
    if args.remeasure: return remeasure(Path(args.out), args.remeasure, args.cache_dir)
    cache_dir, out, preset = args.cache_dir or tempfile.mkdtemp(prefix="make-models-"), Path(args.out), args.preset
    out.mkdir(parents=True, exist_ok=True)
    device, where = "cpu" if not torch.cuda.is_available() else "cuda", device_name()
    print(f"training with the {preset} preset on {where}; cache {cache_dir}", flush=True)
    start_all = time.perf_counter()
    if {"judge", "class-unet", "fashion-vae", "latent-unet"} & set(args.only):
        train_images, train_labels = fashion_tensors(load_fashion_mnist("train", verbose=False))
        test_images, test_labels = fashion_tensors(load_fashion_mnist("test", verbose=False))
        fashion_data = (f"course_lib's offline Fashion-like set ({settings.data_source} source), "
                        f"60,000 training images, fingerprint {data_fingerprint(train_images, train_labels)}")
    if "judge" in args.only:
        start = time.perf_counter()
        judge = train_classifier(train_images, train_labels, seed=0, device=device, progress=False)
        seconds = time.perf_counter() - start
        write_model(out, "judge", half(judge),
                    dict(preset="default", recipe=dict(epochs=2, batch_size=128, learning_rate=3e-3, seed=0),
                         steps=2 * -(-len(train_images) // 128), seconds=seconds, device=where, data=fashion_data,
                         figures=judge_figures(as_shipped(judge), test_images, test_labels)))
        judge = judge.float()
    if "class-unet" in args.only:
        model = make_class_unet(preset)
        record = train_class_conditioned(model, train_images, train_labels, preset, device=device, progress=False,
                                         what="class UNet")
        write_model(out, "class-unet", half(model),
                    dict(preset=preset, recipe=class_run_settings(preset, train_images), steps=record["step"],
                         seconds=record["seconds"], device=where, data=fashion_data,
                         figures=class_unet_figures(as_shipped(model),
                                                    shipped_judge() if "judge" not in args.only else judge)))
    if "fashion-vae" in args.only:
        vae = make_fashion_vae(preset)
        record = train_vae(vae, train_images, preset, device=device, progress=False)
        write_model(out, "fashion-vae", half(vae),
                    dict(preset=preset, recipe=preset_values(preset, "vae"), steps=record["step"],
                         seconds=record["seconds"], device=where, data=fashion_data,
                         figures=fashion_vae_figures(as_shipped(vae), test_images)))
    if "latent-unet" in args.only:  # on the latents of the Fashion VAE trained above, or of the shipped one
        vae = vae.float() if "fashion-vae" in args.only else load_course_model("fashion-vae", AutoencoderKL)
        start = time.perf_counter()
        latents = encode_fashion(vae, train_images, progress=False)
        encoding = time.perf_counter() - start
        latent_run = settings.preset(preset, "latent")
        model = make_latent_unet(vae, latent_run)
        record = train_class_conditioned(model, latents, train_labels, latent_run, device=device, progress=False,
                                         what="latent UNet")
        write_model(out, "latent-unet", half(model),
                    dict(preset=preset, recipe=class_run_settings(latent_run, latents) | {"preset": preset},
                         steps=record["step"], seconds=record["seconds"], device=where,
                         data=f"{fashion_data}, encoded once by the Fashion VAE it ships with "
                              f"({encoding:.0f} s, not counted above)",
                         figures=latent_unet_figures(as_shipped(model), vae,
                                                     shipped_judge() if "judge" not in args.only else judge)))
    if {"clip-towers", "own-sd"} & set(args.only):
        tokenizer = load_clip_tokenizer(verbose=False)
        colour_train = colour_tensors(load_colour_fashion("train"))
        colour_test = colour_tensors(load_colour_fashion("test"))
        fingerprint = data_fingerprint(colour_train["images"], colour_train["label"], colour_train["colour"],
                                       colour_train["pattern"])
        colour_data = (f"course_lib's colour garments (seed 0), 60,000 training images with captions, fingerprint "
                       f"{fingerprint}; each part's seconds are its whole call's, the UNet's with the garments "
                       f"encoded into latents once")
        if args.keep_towers:  # the shipped towers: what `--only clip-towers own-sd` trained last, with its record
            towers, kept = load_course_model("clip-towers", CLIPModel, device), course_model_facts("clip-towers")
            clip_record = {"step": kept["steps"], "seconds": kept["seconds"]}
        else:
            towers = make_clip_towers(preset)
            clip_record = timed_record(lambda: train_clip_towers(towers, tokenizer, colour_train, preset, device=device,
                                                                 progress=False))
            clip_facts = dict(preset=preset, recipe=preset_values(preset, "clip"), steps=clip_record["step"],
                              seconds=clip_record["seconds"], device=where, data=colour_data, shares=SHARED_TEXT_TOWER,
                              figures=clip_towers_figures(as_shipped(towers), tokenizer, colour_test))
            towers = as_shipped(towers)  # its text tower as shipped is what the UNet learns to read
        vae = make_colour_vae(preset)
        vae_record = timed_record(lambda: train_colour_vae(vae, colour_train["images"], preset, device=device,
                                                           progress=False))
        text_encoder = text_tower(towers)
        unet = make_text_unet(text_encoder, vae, preset)
        unet_record = timed_record(lambda: train_text_unet(unet, vae, text_encoder, tokenizer, colour_train, preset,
                                                           device=device, progress=False))
        pipe = own_sd_pipeline(vae, text_encoder, tokenizer, unet)
        seconds = vae_record["seconds"] + clip_record["seconds"] + unet_record["seconds"]
        write_model(out, "own-sd", lambda folder: save_compact_pipeline(pipe, folder),
                    dict(preset=preset, recipe={f: preset_values(preset, f) for f in ("colour_vae", "text_unet")},
                         steps=unet_record["step"], seconds=seconds, device=where, data=colour_data,
                         parts={"colour VAE": dict(steps=vae_record["step"], seconds=round(vae_record["seconds"])),
                                "CLIP towers (text encoder)": dict(steps=clip_record["step"],
                                                                   seconds=round(clip_record["seconds"]),
                                                                   retrained=not args.keep_towers),
                                "UNet": dict(steps=unet_record["step"], seconds=round(unet_record["seconds"]))},
                         figures=own_sd_figures(as_shipped(pipe), colour_test, seconds, cache_dir)))
        if not args.keep_towers:
            write_model(out, "clip-towers", half_sharing(towers, SHARED_TEXT_TOWER), clip_facts)  # after its text tower
    total = sum(f.stat().st_size for name in COURSE_MODELS for f in (out / name).rglob("*")
                if f.is_file() and (out / name).exists())
    print(f"\nall shipped models: {total / 1e6:.1f} MB in {out}; "
          f"this run took {(time.perf_counter() - start_all) / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
