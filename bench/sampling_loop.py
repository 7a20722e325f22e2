"""The hand-written loop (`course_lib.sampling.generate`) against `StableDiffusionPipeline.__call__`, side by side.

    python bench/sampling_loop.py [--rounds 15] [--steps 30] [--size 64]            # CPU, tiny random pipeline
    python bench/sampling_loop.py --sd15 [--steps 50] [--size 512] [--device cuda]  # SD-1.5 model, random weights
    python bench/sampling_loop.py --sd15 --check                                    # the same code on CPU, in seconds

Default: the tiny pipeline on CPU, fp32. Both run `rounds` times, alternating (loop, pipeline, loop, ...), on the
same parts, prompt, seed and PNDM scheduler; the script prints the median seconds of each and the ratio
loop / pipeline (target: <= 1.02), and checks that both gave the same pixels.

--sd15: the SD-1.5 UNet, VAE and text encoder built from their configs with random weights (speed does not depend on
the weights) in fp16 on a CUDA device, batch 1, and seconds per image for: plain (the classic attention kernel),
+ SDPA and channels_last, + torch.compile of the UNet. Needs a GPU; prompt embeddings are computed once from random
token ids, so no tokenizer file is needed there. --check runs that code path on the CPU in fp32 at 64x64, 2 steps,
one round, without torch.compile: its times mean nothing, it only proves the script works before a GPU run.
"""
import statistics, time

import torch

from course_lib.core import get_device
from course_lib.models import SD15_SCHEDULER, tiny_sd_pipeline
from course_lib.sampling import generate
from common import bench_parser


def seconds(fn, device) -> float:
    if device.type == "cuda": torch.cuda.synchronize(device)
    start = time.perf_counter(); fn()
    if device.type == "cuda": torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare_with_pipeline(args):
    pipe = tiny_sd_pipeline(seed=0, device="cpu")
    kwargs = dict(height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=7.5,
                  output_type="pt")
    ours = lambda: generate(pipe, "a red cube on a blue sphere", seed=0, progress=False, **kwargs)
    theirs = lambda: pipe("a red cube on a blue sphere", generator=torch.Generator().manual_seed(0), **kwargs).images
    difference = (ours() - theirs()).abs().max().item()  # also a warm-up of both
    times = {"loop": [], "pipeline": []}
    for _ in range(args.rounds):
        times["loop"].append(seconds(ours, torch.device("cpu")))
        times["pipeline"].append(seconds(theirs, torch.device("cpu")))
    loop, pipeline = statistics.median(times["loop"]), statistics.median(times["pipeline"])
    print(f"tiny pipeline, CPU fp32, {args.size}x{args.size}, {args.steps} steps, guidance 7.5, "
          f"{args.rounds} alternating rounds, {torch.get_num_threads()} threads")
    print(f"  generate (hand-written loop): {loop:.4f} s median")
    print(f"  StableDiffusionPipeline:      {pipeline:.4f} s median")
    print(f"  ratio loop / pipeline: {loop / pipeline:.3f}  "
          f"(target <= 1.02: {'met' if loop / pipeline <= 1.02 else 'NOT met'})")
    print(f"  max |pixel difference|: {difference:.2e}")


def sd15_parts(device, dtype):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel
    from course_lib.sampling import unet_config
    from course_lib.text import text_encoder_config
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    parts = dict(unet=UNet2DConditionModel(**unet_config("sd1")), vae=vae,
                 text_encoder=CLIPTextModel(text_encoder_config("sd1")),
                 scheduler=PNDMScheduler.from_config(SD15_SCHEDULER))
    for name in ("unet", "vae", "text_encoder"): parts[name] = parts[name].to(device, dtype).eval()
    ids = torch.randint(0, 49407, (2, 77), device=device)
    with torch.no_grad(): uncond, cond = parts["text_encoder"](ids)[0].chunk(2)
    return parts | {"tokenizer": object()}, (uncond, cond)


def sd15_speed(args):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    device, dtype = get_device("cpu" if args.check else args.device), torch.float32 if args.check else torch.float16
    if device.type != "cuda" and not args.check:
        raise SystemExit("--sd15 times the full-size model in fp16: it needs a CUDA device "
                         "(or --check, to test the script).")
    torch.manual_seed(0)
    parts, embeds = sd15_parts(device, dtype)
    run = lambda: generate(parts, None, prompt_embeds=embeds, height=args.size, width=args.size,
                           num_inference_steps=args.steps, seed=0, output_type="pt", progress=False)
    settings = [("plain (classic attention)", lambda: parts["unet"].set_attn_processor(AttnProcessor())),
                ("+ SDPA, channels_last", lambda: (parts["unet"].set_attn_processor(AttnProcessor2_0()),
                                                   parts["unet"].to(memory_format=torch.channels_last))),
                ("+ torch.compile(unet)", lambda: parts.__setitem__("unet", torch.compile(parts["unet"])))]
    if args.check: settings = settings[:2]  # compiling the 860 M-parameter UNet on a CPU takes minutes
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--check: times mean nothing)"
    print(f"SD-1.5 architecture, random weights, {str(dtype)[6:]}, {args.size}x{args.size}, {args.steps} PNDM steps, "
          f"batch 1, guidance 7.5, {where}")
    for name, apply in settings:
        apply()
        for _ in range(1 if args.check else 2): seconds(run, device)  # warm-up (and compilation)
        best = min(seconds(run, device) for _ in range(args.rounds))
        print(f"  {name:28} {best:.3f} s per image (best of {args.rounds})")


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--sd15", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--check", action="store_true", help="with --sd15: run its code path on the CPU, tiny and fast")
    args = parser.parse_args()
    if args.sd15:
        small = dict(rounds=1, steps=2, size=64) if args.check else dict(rounds=5, steps=50, size=512)
        args.rounds, args.steps, args.size = (args.rounds or small["rounds"], args.steps or small["steps"],
                                              args.size or small["size"])
        sd15_speed(args)
    else:
        args.rounds, args.steps, args.size = args.rounds or 15, args.steps or 30, args.size or 64
        compare_with_pipeline(args)


if __name__ == "__main__":
    main()
