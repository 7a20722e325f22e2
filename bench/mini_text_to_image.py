"""Feasibility of the course's own mini text-to-image model on a CPU (not yet a chapter): measured, not packaged.

    python bench/mini_text_to_image.py [--steps 1500] [--out output/figures]

Puts together what chapters 1-3 built: chapter 2's Fashion VAE (cpu preset, cached) for 4x8x8 latents, chapter 3's
caption encoder (cached) for the text, and a 1.7 M-parameter `UNet2DConditionModel` with cross-attention, trained
with chapter 1's `train_class_conditioned`: each image's class label becomes a random caption of that class every
time it is seen (256 encoded captions per class), replaced by the empty prompt 10 % of the time, so classifier-free
guidance has an unconditional half. The parts then go into a real `StableDiffusionPipeline` and `generate` samples
the ten class prompts (10 seeds each, DDIM, 30 steps) at guidance 1, 3 and 7.5; chapter 1's judge classifier
measures class accuracy. Prints encode and training time, throughput, and the accuracy per scale; saves a grid.
"""
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from course_lib.conditioning import train_class_conditioned
from course_lib.images import show_images
from course_lib.data import fashion_tensors, load_fashion_mnist
from course_lib.evaluation import class_accuracy, fashion_classifier
from course_lib.latent_diffusion import encode_fashion, fashion_vae
from course_lib.models import load_clip_tokenizer, make_scheduler
from course_lib.sampling import generate
from course_lib.text import text_states
from course_lib.text_encoders import CLASS_PROMPTS, caption_encoder, fashion_captions
from common import bench_parser


class CaptionedUNet(torch.nn.Module):
    "Called like chapter 1's class UNet, (latents, t, class_labels), but conditions on a random caption of each class."
    def __init__(self, unet, caption_states, empty_state, caption_dropout=0.1, seed=0):
        super().__init__()
        self.unet, self.caption_dropout, self.generator = unet, caption_dropout, torch.Generator().manual_seed(seed)
        self.register_buffer("caption_states", caption_states, persistent=False)  # 10 x K x 77 x width
        self.register_buffer("empty_state", empty_state, persistent=False)

    def forward(self, sample, timestep, class_labels):
        pick = torch.randint(0, self.caption_states.shape[1], (len(sample),), generator=self.generator)
        states = self.caption_states[class_labels, pick.to(sample.device)]
        dropped = (torch.rand(len(sample), generator=self.generator) < self.caption_dropout).to(sample.device)
        return self.unet(sample, timestep,
                         encoder_hidden_states=torch.where(dropped[:, None, None], self.empty_state, states))


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="output/figures")
    args = parser.parse_args()
    images, labels = fashion_tensors(load_fashion_mnist("train"), "cpu")
    vae, tokenizer = fashion_vae(images, "cpu"), load_clip_tokenizer(verbose=False)
    text_encoder = caption_encoder(tokenizer)
    start = time.perf_counter()
    latents = encode_fashion(vae, images, progress=False)
    print(f"encoded {len(latents)} images to {tuple(latents.shape[1:])} latents in {time.perf_counter() - start:.0f} s")
    captions, caption_labels = fashion_captions(6000, "train", seed=0)
    per_class = [[caption for caption, label in zip(captions, caption_labels) if label == k][:256] for k in range(10)]
    states = torch.stack([text_states(tokenizer, text_encoder, c) for c in per_class])
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                layers_per_block=1, cross_attention_dim=text_encoder.config.hidden_size,
                                attention_head_dim=8, norm_num_groups=8)
    print(f"UNet2DConditionModel: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters")
    model = CaptionedUNet(unet, states, text_states(tokenizer, text_encoder, [""])[0])
    run = dict(train_samples=60000, epochs=3, batch_size=64, learning_rate=2e-3, mixed_precision="bf16")
    record = train_class_conditioned(model, latents, labels, run, class_dropout=0.0, max_steps=args.steps,
                                     device="cpu", progress=False)
    print(f"trained {record['step']} steps (batch 64) in {record['seconds']:.0f} s, {record['images_per_second']:.0f} "
          f"images/s, mean loss of the last 100 steps {sum(record['losses'][-100:]) / 100:.3f}")
    # the Fashion schedule
    scheduler = make_scheduler("ddim", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    judge = fashion_classifier(images, labels, progress=False)
    prompts, wanted = [p for p in CLASS_PROMPTS for _ in range(10)], torch.arange(10).repeat_interleave(10)
    for scale in (1.0, 3.0, 7.5):
        start = time.perf_counter()
        samples = generate(pipe, prompts, guidance_scale=scale, num_inference_steps=30, output_type="pt",
                           progress=False, generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))])
        print(f"guidance {scale}: class accuracy {class_accuracy(judge, samples, wanted):.2f} "
              f"({len(prompts)} images in {time.perf_counter() - start:.1f} s)")
        if scale == 3.0:
            path = Path(args.out) / "mini_text_to_image.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            show_images(samples.view(10, 10, *samples.shape[1:])[:, :6].flatten(0, 1), ncols=6,
                        titles=[p.removeprefix("a photo of ") if i % 6 == 0 else "" for i, p in
                                enumerate(p for p in CLASS_PROMPTS for _ in range(6))]).savefig(path)
            print(f"  samples at guidance 3 -> {path}")


if __name__ == "__main__":
    main()
