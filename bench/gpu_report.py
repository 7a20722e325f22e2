"""Every GPU figure of the course in one run, before and after the fast path's levers, as one markdown table.

    python bench/gpu_report.py [--budget 420]                 # a CUDA device: about 6 minutes -> output/gpu_report/
    python bench/gpu_report.py --out bench/results            # the same, committing the results (and the packaged copy)
    python bench/gpu_report.py --check                        # the same code on the CPU, toy sizes: ~1 minute

Writes `gpu_report.md` (device, versions, one table per group) and `gpu_report.json` (what
`course_lib.fast.plot_gpu_report` draws) into --out after every group, so a run cut short keeps what it measured. --out
is `output/gpu_report` unless you name another folder: no run overwrites the committed results by default. With
`--out bench/results` the JSON is also copied to `course_lib/assets/gpu_report.json`, the report the chapters plot (it
ships inside the package); a test keeps the two equal. Groups, in this order:

1. attention cost on the device: one self-attention block, classic kernel against SDPA, 32/64/128 px (chapter 2)
2. chapter 1 sampling: the gpu preset's class UNet (15.9 M, random weights), 8 samples, DDIM 50 steps, guidance 3:
   eager fp32 and bf16 autocast (the plain path) against the fast path (CUDA graphs; bf16 as weights)
3. chapter 1 training, gpu preset (batch 256, bf16): the seed chapter's loop, the course's plain loop (a loss read every
   step, foreach AdamW), the fast path (losses read every 50 steps, fused AdamW), + channels_last, and fp32; seconds
   per epoch of 60,000 images, and a profile of the fast path: how much of the wall time the GPU was busy
4. SD 1.5 (its UNet, VAE and text encoder built from their configs with random weights: speed does not depend on them),
   fp16, 512x512, 50 PNDM steps, batch 1, guidance 7.5, a prompt through the real tokenizer: seconds per image end to
   end for classic attention, SDPA, + channels_last, + fused QKV (eager), and `generate`'s fast path (compiled UNet
   with CUDA graphs: its first call, which compiles, is reported apart)
5. the live panel on that pipeline: seconds per redraw after a change of guidance, of seed, and at 50 steps

Each time is the median of --repeats calls after a warm-up call. --budget (seconds) skips the optional variants once the
run has used that much, so the whole report stays within 8 minutes. --check: tiny models (the smoke preset, the tiny
SD pipeline at 64x64), a few steps, no compiler: its times mean nothing; it proves the script before GPU time is spent.
"""
import json, platform, statistics, sys, time, traceback
from pathlib import Path

import torch

import course_lib
from course_lib.core import get_device
from common import bench_parser

START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "bench" / "results"  # written only when --out names it
PACKAGED = ROOT / "course_lib" / "assets" / "gpu_report.json"  # read_gpu_report's default: a copy of COMMITTED's JSON


def elapsed() -> float: return time.perf_counter() - START


def synced(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def seconds_of(fn, device) -> float:
    "Wall seconds of one call of `fn`, the device's queue drained before and after."
    synced(device); start = time.perf_counter(); fn(); synced(device)
    return time.perf_counter() - start


def median_seconds(fn, device, repeats: int) -> float:
    return statistics.median(seconds_of(fn, device) for _ in range(repeats))


class Report:
    "The groups measured so far; written to markdown and JSON after every group."
    def __init__(self, out: Path, device, check: bool):
        import diffusers, transformers
        self.out, self.check, self.groups, self.tables, self.notes = out, check, [], [], []
        self.device = (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else f"CPU ({platform.processor() or 'x86-64'}, --check)")
        self.versions = {"python": platform.python_version(), "torch": torch.__version__,
                         "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                         "course_lib": course_lib.__version__}
        out.mkdir(parents=True, exist_ok=True)

    def group(self, name: str, unit: str, rows: list, notes=()):
        self.groups.append({"name": name, "unit": unit, "rows": rows, "notes": list(notes)}); self.write()

    def table(self, name: str, markdown: str):
        self.tables.append({"name": name, "markdown": markdown}); self.write()

    def note(self, text: str):
        print(text, flush=True); self.notes.append(text); self.write()

    def markdown(self) -> str:
        lines = [f"# GPU report: {self.device}", "",
                 "Versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items())
                 + f". Run took {elapsed():.0f} s.", ""]
        if self.check: lines += ["**--check: CPU, toy sizes, no compiler. These times mean nothing.**", ""]
        for g in self.groups:
            first = g["rows"][0]["seconds"] if g["rows"] else None
            lines += [f"## {g['name']}", "", f"| variant | {g['unit']} | vs first | note |", "|---|---|---|---|"]
            lines += [f"| {r['variant']} | {r['seconds']:.4g} | {first / r['seconds']:.2f}x | {r.get('note', '')} |"
                      for r in g["rows"]]
            lines += [""] + [f"- {n}" for n in g["notes"]] + [""]
        for t in self.tables: lines += [f"## {t['name']}", "", t["markdown"], ""]
        if self.notes: lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def write(self):
        data = {"device": self.device, "versions": self.versions, "check": self.check, "seconds": elapsed(),
                "groups": self.groups, "tables": self.tables, "notes": self.notes}
        (self.out / "gpu_report.json").write_text(json.dumps(data, indent=1))
        (self.out / "gpu_report.md").write_text(self.markdown())
        if self.out.resolve() == COMMITTED: PACKAGED.write_text(json.dumps(data, indent=1))


def markdown_table(frame) -> str:
    "A pandas frame as a markdown table (numbers to 4 significant digits), without the optional `tabulate` package."
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    rows = [" | ".join(map(str, frame.columns))] + ["|".join(["---"] * len(frame.columns))]
    rows += [" | ".join(cell(v) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(f"| {r} |" if not r.startswith("-") else f"|{r}|" for r in rows)


def attention_group(report, device, check, repeats, budget, quick=False):
    from course_lib.attention import attention_cost
    sizes, run_time = ([8, 16], 0.01) if check else ([32, 64, 128], 0.2)
    table = attention_cost(sizes, channels=64, device=device, min_run_time=run_time,
                           progress=False).drop(columns="device")
    report.table("Attention cost on the device (one block, 64 channels, 1 head, batch 1; chapter 2)",
                 markdown_table(table))


PROMPT = "a photograph of an astronaut riding a horse"


def sd_parts_for(device, check):
    "SD 1.5's parts with random weights in fp16 (the tiny pipeline in fp32 for --check), with the real tokenizer."
    from course_lib.models import clip_tokenizer_from_bpe, tiny_sd_pipeline
    if check: return tiny_sd_pipeline(seed=0, tokenizer=clip_tokenizer_from_bpe(), device=device).components, 64, 3
    sys.path.insert(0, str(Path(__file__).parent))
    from sampling_loop import sd15_parts
    torch.manual_seed(0)
    parts, _ = sd15_parts(device, torch.float16)
    return parts | {"tokenizer": clip_tokenizer_from_bpe()}, 512, 50


def sd_group(report, device, check, repeats, budget, quick=False):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from course_lib.fast import fast_inference
    from course_lib.latents import decode
    from course_lib.sampling import generate
    from course_lib.text import encode_prompt
    parts, size, steps = sd_parts_for(device, check)
    unet, vae = parts["unet"], parts["vae"]
    image = lambda fast: lambda: generate(parts, PROMPT, height=size, width=size, num_inference_steps=steps,
                                          guidance_scale=7.5, seed=0, progress=False, fast=fast)
    def set_processor(processor):
        for model in (unet, vae): model.set_attn_processor(processor)
    def fused_eager():
        unet.fuse_qkv_projections(); seconds = timed_eager(); unet.unfuse_qkv_projections()
        return seconds
    def timed_eager():
        seconds_of(image(False), device)  # warm-up
        return median_seconds(image(False), device, repeats)
    rows = []
    eager = [(f"plain: classic attention kernel, {str(unet.dtype)[6:]} (eager)",
              lambda: set_processor(AttnProcessor())),
             ("+ SDPA (diffusers' default)", lambda: set_processor(AttnProcessor2_0())),
             ("+ channels_last (eager)", lambda: [m.to(memory_format=torch.channels_last) for m in (unet, vae)])]
    for name, prepare in eager[1:] if quick else eager:
        prepare(); rows.append({"variant": name, "seconds": timed_eager()})
        print(f"  SD: {name}: {rows[-1]['seconds']:.3f} s", flush=True)
    if elapsed() < budget and not quick:
        rows.append({"variant": "+ fused QKV projections (eager; not in the fast path)", "seconds": fused_eager()})
        print(f"  SD: fused QKV: {rows[-1]['seconds']:.3f} s", flush=True)
    first = seconds_of(image(True), device)  # compiles the UNet, records its CUDA graphs
    rows.append({"variant": "generate's fast path: compiled UNet, CUDA graphs",
                 "seconds": median_seconds(image(True), device, repeats),
                 "note": f"first image {first:.1f} s (compiling)"})
    print(f"  SD: fast path: {rows[-1]['seconds']:.3f} s (first {first:.1f} s)", flush=True)
    with torch.no_grad():
        latents = generate(parts, PROMPT, height=size, width=size, num_inference_steps=steps, seed=0, progress=False,
                           output_type="latent", fast=True)
        decode_s = median_seconds(lambda: decode(vae, latents, "pil"), device, repeats)
        encode_s = median_seconds(lambda: encode_prompt(parts["tokenizer"], parts["text_encoder"], PROMPT, "",
                                                        device=device), device, repeats)
        embeddings = torch.cat(encode_prompt(parts["tokenizer"], parts["text_encoder"], PROMPT, "", device=device))
        fast_unet, noisy = fast_inference(unet), torch.cat([latents] * 2)
        unet_s = median_seconds(lambda: [fast_unet(noisy, torch.tensor(500), encoder_hidden_states=embeddings)
                                         for _ in range(10)], device, repeats) / 10
    per_step = (rows[-1]["seconds"] - decode_s - encode_s) / steps * 1000
    report.group(f"SD 1.5 architecture (random weights), {size}x{size}, {steps} PNDM steps, batch 1, guidance 7.5: "
                 "one image end to end", "s per image", rows,
                 [f"of the fast path's image: text encoding {encode_s * 1000:.1f} ms, "
                  f"VAE decode to PIL {decode_s * 1000:.1f} ms (both eager), "
                  f"so {per_step:.2f} ms per denoising step (UNet with CFG, scheduler, guidance); the graphed UNet "
                  f"alone: {unet_s * 1000:.2f} ms per call (batch 2)", "target: <= 0.40 s per image"])
    return parts, size


def panel_group(report, device, check, parts, size):
    from course_lib.widgets import guidance_explorer
    explorer = guidance_explorer(parts, PROMPT, height=size, width=size, num_inference_steps=3 if check else 20,
                                 fast=True)
    rows, changes = [], [("guidance 7.5 -> 5 (20 steps)", "guidance", 5.0), ("seed 0 -> 1 (20 steps)", "seed", 1),
                         ("steps 20 -> 50", "steps", 4 if check else 50),
                         ("guidance 5 -> 9 (50 steps)", "guidance", 9.0)]
    for name, control, value in changes:
        start = time.perf_counter(); explorer.controls[control].value = value; synced(device)
        seconds = time.perf_counter() - start
        if explorer.last_error is not None: raise explorer.last_error
        status = explorer.status.value.split("<br>")[1]
        rows.append({"variant": f"fast path: redraw after {name}", "seconds": seconds,
                     "note": f"status line: {status}"})
        print(f"  panel: {name}: {seconds:.3f} s ({status})", flush=True)
    report.group("Live panel (guidance_explorer) on that pipeline: one redraw, PNG and history included",
                 "s per redraw", rows, ["target: <= 0.5 s after the first (compiled) image"])


def class_sampling_group(report, device, check, repeats, budget, quick=False):
    from course_lib.conditioning import generate_from_class, make_class_unet
    from course_lib.models import make_scheduler
    preset, steps = ("smoke", 3) if check else ("gpu", 50)
    model, scheduler = make_class_unet(preset).to(device).eval(), make_scheduler("ddim")
    def sampler(**kw):
        return lambda: generate_from_class(model, scheduler, 0, 8, guidance_scale=3, num_inference_steps=steps,
                                           generator=torch.Generator(device).manual_seed(0), progress=False, **kw)
    rows = []
    for name, kw in [("plain, fp32 (eager)", dict(fast=False)),
                     ("plain, bf16 autocast (eager)", dict(fast=False, mixed_precision="bf16")),
                     ("fast path, fp32: CUDA graphs", dict(fast=True)),
                     ("fast path, bf16 weights: CUDA graphs", dict(fast=True, mixed_precision="bf16"))]:
        first = seconds_of(sampler(**kw), device)  # compiles on the fast path
        rows.append({"variant": name, "seconds": median_seconds(sampler(**kw), device, repeats),
                     "note": f"first call {first:.1f} s" if kw["fast"] else ""})
        print(f"  class sampling: {name}: {rows[-1]['seconds']:.4f} s (first {first:.2f} s)", flush=True)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    report.group(f"Chapter 1 sampling: {preset} preset's class UNet ({params:.1f} M), 8 samples, DDIM {steps}, "
                 "guidance 3", "s per call", rows, ["target: <= 0.15 s, bf16 never slower than fp32"])


def training_group(report, device, check, repeats, budget, quick=False):
    import copy
    sys.path.insert(0, str(Path(__file__).parent))
    from class_training import original_loop
    from course_lib.conditioning import make_class_unet, original_loader, train_class_conditioned
    from course_lib.data import fashion_dataset
    from course_lib.garments import draw_fashion
    from course_lib.training import preset_values
    preset, steps, warm = ("smoke", 4, 1) if check else ("gpu", 120, 10)
    batch = preset_values(preset)["batch_size"]
    images, labels = draw_fashion(steps * batch, seed=0)
    dataset = fashion_dataset(images.numpy(), labels.numpy(), "offline garments for the GPU report")
    images, labels, base = images.to(device), labels.to(device), make_class_unet(preset)
    def course(fast, mixed_precision, channels_last=False, compile=False):
        """A run of the course's trainer on one copy of the model: its warm-up and timed calls share it (and its
        compilation)."""
        model = copy.deepcopy(base).to(device)
        if channels_last: model.to(memory_format=torch.channels_last)
        # --check: the path, not the compiler
        recipe = preset_values(preset) | {"compile": compile and device.type == "cuda"}
        return lambda n: train_class_conditioned(model, images, labels, recipe, max_steps=n, device=device,
                                                 progress=False, fast=fast,
                                                 mixed_precision=mixed_precision)["images_per_second"]
    def seed_loop(n):
        model = copy.deepcopy(base).to(device).train()
        return original_loop(model, original_loader(dataset, batch_size=256), max(1, n * batch // 256), device)
    # (name, run, optional, in --quick)
    variants = [("the seed chapter's loop: per-image PIL transforms, fp32, batch 256", lambda: seed_loop, False, True),
                ("course, plain path: bf16 autocast, a loss read every step, AdamW", lambda: course(False, "bf16"),
                 False, True),
                ("course, fast path: bf16, losses read every 50 steps, fused AdamW", lambda: course(True, "bf16"),
                 False, False),
                ("fast path + channels_last", lambda: course(True, "bf16", True), True, False),
                ("fast path in fp32", lambda: course(True, "no"), False, True),
                ("fast path in fp32, compiled model (CUDA graphs)", lambda: course(True, "no", compile=True),
                 True, True)]
    rows = []
    for name, make_run, optional, in_quick in variants:
        if quick and not in_quick: continue
        if optional and elapsed() > budget: report.note(f"training: skipped '{name}' (over the time budget)"); continue
        run = make_run()
        warm_seconds = seconds_of(lambda run=run: run(warm), device)  # compiles, where the variant compiles
        speed = run(steps)
        rows.append({"variant": name, "seconds": 60000 / speed,
                     "note": f"{speed:,.0f} img/s; {warm} warm-up steps {warm_seconds:.1f} s"})
        print(f"  training: {name}: {speed:,.0f} img/s (warm-up {warm_seconds:.1f} s)", flush=True)
    best = min(rows[1:], key=lambda r: r["seconds"])
    notes = [f"{steps} steps of batch {batch} per variant after {warm} warm-up steps; "
             "seconds per epoch = 60,000 / img/s",
             f"fastest course variant: {best['variant']}: 25 epochs {25 * best['seconds'] / 60:.1f} min, "
             f"{rows[0]['seconds'] / best['seconds']:.2f}x the seed loop (target: 25 epochs <= 2 min, >= 5x)"]
    profiled = course(True, "no"); profiled(warm)
    notes.append(profile_training(lambda: profiled(20), device))
    params = sum(p.numel() for p in base.parameters()) / 1e6
    report.group(f"Chapter 1 training, {preset} preset ({params:.1f} M parameters)", "s per epoch", rows, notes)


def profile_training(run, device) -> str:
    """How busy the GPU was during 20 fast-path training steps (kernel time over wall time), and the kernels that took
    most."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = seconds_of(run, device)
    # the kernels, not the ops that launched them
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    busy = sum(e.self_device_time_total for e in kernels) / 1e6
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:4]
    kernels = ("; ".join(f"{e.key[:60]} {e.self_device_time_total / 1e6 / max(busy, 1e-9):.0%}" for e in top)
               or "no GPU kernels")
    return (f"profile of 20 fast-path fp32 steps, not compiled (profiler on, so slower): wall {wall:.2f} s, "
            f"GPU kernels {busy:.2f} s = {busy / wall:.0%} busy; most time: {kernels}")


GROUPS = {"attention": attention_group, "sd": sd_group, "panel": panel_group, "class-sampling": class_sampling_group,
          "training": training_group}


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--check", action="store_true", help="the same code on the CPU, toy sizes, no compiler")
    parser.add_argument("--out", default="output/gpu_report",
                        help="folder for the report (default output/gpu_report; bench/results commits it)")
    parser.add_argument("--budget", type=float, default=420, help="seconds after which optional variants are skipped")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--quick", action="store_true",
                        help="fewer 'before' variants: the plain path and the fast path's")
    args = parser.parse_args()
    device = torch.device("cpu") if args.check else get_device(args.device)
    if device.type != "cuda" and not args.check:
        raise SystemExit("The GPU report needs a CUDA device; --check runs its code on the CPU at toy sizes.")
    repeats = 1 if args.check else args.repeats
    report = Report(Path(args.out), device, args.check)
    print(f"GPU report on {report.device}: {', '.join(args.only)}", flush=True)
    sd = None
    for name in args.only:
        start = elapsed()
        try:
            if name == "panel":
                if sd is None:
                    raise RuntimeError("the panel group needs the sd group first (it reuses its compiled pipeline)")
                panel_group(report, device, args.check, *sd)
            elif name == "sd": sd = sd_group(report, device, args.check, repeats, args.budget, args.quick)
            else: GROUPS[name](report, device, args.check, repeats, args.budget, args.quick)
            print(f"[{name}: {elapsed() - start:.0f} s, {elapsed():.0f} s in all]", flush=True)
        except Exception as error:  # one broken group must not cost the others' figures
            report.note(f"{name} failed after {elapsed() - start:.0f} s: {type(error).__name__}: {error}")
            traceback.print_exc()
    report.write()
    print("\n" + report.markdown())
    print(f"Written to {report.out.resolve()}" + (f" and {PACKAGED}" if report.out.resolve() == COMMITTED else ""))


if __name__ == "__main__":
    main()
