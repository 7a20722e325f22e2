"""What chapter 5's UNet training spends on its captions, with and without encoding each distinct caption once.

    python bench/text_states.py [--steps 8] [--repeats 5]

The text tower is frozen, so `frozen_text_states` (inside `text_diffusion_loss`) encodes each distinct caption once
and looks it up after that, and `caption_batches` tokenizes each distinct caption of an epoch once. This script replays
the cpu preset's three epochs of captions (60,000 garments, batches of 64, one caption in ten dropped as in training)
through the shipped text tower both ways and checks that the states are the same bit for bit; times an epoch's
tokenization both ways; and times whole training steps of the cpu preset's UNet side by side (the memo warm, as in
epochs 2 and 3). About 3 minutes on 2 CPU cores.
"""
import time

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import torch

from course_lib.colour_fashion import colour_captions, colour_tensors, load_colour_fashion
from course_lib.training import preset_values
from course_lib.latents import encode
from course_lib.own_sd import (colour_unit_images, frozen_text_states, make_text_unet, shipped_own_sd,
                               text_diffusion_loss)
from course_lib.text import tokenize
from course_lib.text_encoders import caption_batches
from common import bench_parser, parse_bench_args
from timing import side_by_side_seconds

parser = bench_parser(__doc__)
parser.add_argument("--steps", type=int, default=8, help="training steps per timed block")
parser.add_argument("--repeats", type=int, default=5, help="timed blocks per way (the fastest counts)")
args, device, out = parse_bench_args(parser)
torch.manual_seed(0)
p = preset_values("cpu", "text_unet")
pipe = shipped_own_sd()
tokenizer, text_encoder = pipe.tokenizer, pipe.text_encoder
colour = colour_tensors(load_colour_fashion("train"))
batches = caption_batches(tokenizer, colour, p["batch_size"])
empty = tokenize(tokenizer, [""]).input_ids

start = time.perf_counter()
captions = colour_captions(colour["label"], colour["colour"], colour["pattern"], "train", seed="0-epoch0")
every_caption = time.perf_counter(); tokenize(tokenizer, captions); every_caption = time.perf_counter() - every_caption
distinct = time.perf_counter(); next(batches(0)); distinct = time.perf_counter() - distinct
print(f"tokenizing an epoch's 60,000 captions: {every_caption:.1f} s one by one, {distinct:.1f} s "
      f"({len(set(captions)):,} distinct, each once), {every_caption / distinct:.1f}x")

memo, plain, cached_s, plain_s, n = frozen_text_states(text_encoder), None, 0.0, 0.0, 0
generator = torch.Generator().manual_seed(0)
for epoch in range(p["epochs"]):
    for _, ids in batches(epoch):
        dropped = torch.rand(len(ids), generator=generator) < p["caption_dropout"]
        ids = torch.where(dropped[:, None], empty, ids)
        start = time.perf_counter()
        with torch.no_grad(): plain = text_encoder(ids).last_hidden_state
        middle = time.perf_counter(); cached = memo(ids); end = time.perf_counter()
        plain_s, cached_s, n = plain_s + middle - start, cached_s + end - middle, n + 1
        assert torch.equal(plain, cached), "the memo's states differ from the tower's"
print(f"text states of {n:,} batches ({p['epochs']} epochs): {plain_s:.1f} s encoding every caption, {cached_s:.1f} s "
      f"each distinct one once ({plain_s / cached_s:.1f}x); equal bit for bit")

unet = make_text_unet(text_encoder, pipe.vae, "cpu")
optimizer = torch.optim.AdamW(unet.parameters(), lr=p["learning_rate"])
latents = encode(pipe.vae, colour_unit_images(colour["images"][:p["batch_size"] * args.steps]), mode="mean",
                 progress=False)
block = [(latents[i:i + p["batch_size"]], ids) for i, (_, ids) in zip(range(0, len(latents), p["batch_size"]),
                                                                           batches(0))]
def steps(loss):
    generator = torch.Generator().manual_seed(0)
    for batch in block:
        loss(unet, batch, generator, False).backward(); optimizer.step(); optimizer.zero_grad()
with_memo = text_diffusion_loss(text_encoder, empty, p["caption_dropout"], snr_gamma=p["snr_gamma"])
without_memo = text_diffusion_loss(text_encoder, empty, p["caption_dropout"], snr_gamma=p["snr_gamma"],
                                   max_captions=0)
seconds = side_by_side_seconds(lambda: steps(without_memo), lambda: steps(with_memo), repeats=args.repeats)
print(f"a training step of the cpu preset's UNet (fastest of {args.repeats} blocks of {args.steps}): "
      f"{seconds[0] / args.steps:.3f} s encoding every caption, {seconds[1] / args.steps:.3f} s with the memo warm "
      f"({seconds[0] / seconds[1]:.2f}x)")
