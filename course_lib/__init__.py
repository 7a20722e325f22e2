"""A hands-on Stable Diffusion course: class conditioning, latents, text encoders and the sampling loop, as nbdev notebooks and a tested library.

Modules:

- `course_lib.attention`: Self-attention compares every position of a feature map with every other one, so its cost grows with the square of the pixel count. This notebook measures one attention block's time and peak memory as the map grows, with the classic kernel and with PyTorch's fused one, and shows what the numbers mean for Stable Diffusion.
- `course_lib.colour_fashion`: The drawn garments of [00_garments](00_garments.ipynb), painted in one of ten colours at 32×32, each with its class, colour and pattern, and a caption built from them by one grammar: the data chapters 3 and 5 train text encoders and a Stable Diffusion of our own on.
- `course_lib.conditioning`: Train a small UNet on Fashion-MNIST that takes a class label next to the noisy image, sample the class you ask for, then make it obey better with classifier-free guidance.
- `course_lib.data`: One function, `load_fashion_mnist`, and three places the data can come from. Whichever you use, you get the same thing back, so the rest of the course never cares.
- `course_lib.evaluation`: How often does the model draw the class we asked for, and how varied and realistic are its drawings? Pictures suggest; this notebook measures, with a small Fashion classifier as the judge.
- `course_lib.exercises`: An exercise knows its question, how to check an answer, its hints (one per call) and its solution. A check never just says "wrong": it names what differs (shape, dtype, values) and the slip that usually causes it.
- `course_lib.fast`: On a big GPU the course's models are too small to keep it busy: it waits for Python to launch thousands of tiny kernels. Compiling the UNet and replaying it as a CUDA graph removes that wait. This notebook holds the levers, proves on the CPU that they compute the same thing, and shows what each one measured on an H200.
- `course_lib.garments`: Ten small programs, one per Fashion-MNIST class, draw garments from signed distance functions, with random proportions, pattern and shading. They make the `offline` set of [00_data](00_data.ipynb) and the colour garments of [00_colour_fashion](00_colour_fashion.ipynb).
- `course_lib.images`: Tensors in [-1, 1] or [0, 1], uint8 arrays, PIL images, one image or a batch, channels first or last: `show_images` draws them all as a labelled grid, and `image_grid` pastes them into one PIL image.
- `course_lib.latent_diffusion`: Chapter [02](02_latents.ipynb) took Stable Diffusion's VAE apart. Here we train a small VAE for Fashion images, give it a scaling factor the way SD computed its own, and train chapter 1's class-conditioned UNet on its latents: then we time it and judge it against the pixel model.
- `course_lib.latents`: Self-attention costs grow with the square of the pixel count. Stable Diffusion therefore denoises a small *latent* image that a variational autoencoder (VAE) compresses from the picture and expands back. This notebook says why, and takes Stable Diffusion's VAE apart: encode, decode, the scaling factor and a picture's round trip.
- `course_lib.models`: Where the course's models come from: the Hub for the real thing, CLIP's merge list (shipped inside `course_lib`) for the real tokenizer without a network, and tiny random models built from configs for tests and offline runs.
- `course_lib.new_words`: Teach the course's own Stable Diffusion a colour it has never seen, by two methods people use on SD 1.5: a new word's embedding alone (textual inversion), and low-rank updates to the UNet's attention (LoRA, with `peft`). Measured side by side: minutes to learn, bytes learnt, how often the new word is drawn as asked, and what the model forgets.
- `course_lib.own_sd`: Stable Diffusion's parts at toy scale: a colour VAE, chapter 3b's CLIP text tower and a text-conditioned UNet, trained on a laptop, assembled into a real `StableDiffusionPipeline`, and measured against what the prompt asked.
- `course_lib.pattern_words`: Chapter 5's Stable Diffusion first drew the class and the colour a prompt asks for, and a pattern word only as "not plain". This notebook looks for where the word got lost: in the text encoder, in the UNet's guess of the garment, in how the training loss spends its steps, or in the VAE; and measures what bought it back.
- `course_lib.sampling`: Everything the earlier chapters built meets here: a prompt encoded by CLIP, noise in the VAE's latent space, and a UNet that removes the noise step by step, steered by classifier-free guidance. We write the loop out in full, check it against diffusers to the last bit, and then wrap it in one function, `generate`.
- `course_lib.text`: A prompt becomes 77 token ids, the ids become 77 vectors, and the UNet attends to those vectors while it denoises. This notebook takes the first two steps apart: CLIP's byte-pair tokenizer and its text encoder.
- `course_lib.text_encoders`: Chapter [03](03_text.ipynb) showed how Stable Diffusion reads a prompt with CLIP's text encoder. Here we give a text encoder meaning on a laptop, twice: a small encoder told each caption's class, then a small CLIP whose text and image towers learn together from captioned garments. Chapter [05](05_own_sd.ipynb) takes that CLIP's text tower.
- `course_lib.training`: Presets, batches, named random streams, the learning-rate schedule, checkpoints, the cache, and the one trainer that every model of the course goes through.
- `course_lib.versions`: `course_lib` declares a range for each library it imports. The ranges are tested at both ends (torch at its newest only), and importing the course checks the libraries you have against them, in one line per problem instead of a traceback deep inside a chapter.
- `course_lib.widgets`: Chapter [04](04_sampling.ipynb) wrote the sampling loop and `generate`. Here it gets knobs: a panel where the guidance scale, the seed, the prompt and the number of steps are sliders and boxes, and the picture follows."""

__version__ = "0.1.0"

import logging

# When diffusers imports its pipelines, transformers 5 advises "Install torchvision" for CLIP's image processor and
# falls back to the PIL one, which is all the course uses. Following that advice pulls a CUDA build of torch of several
# GB, so this one message is dropped (standard logging; it runs before any course module imports diffusers).
logging.getLogger("transformers.utils.import_utils").addFilter(
    lambda record: "requires torchvision (not installed)" not in record.getMessage())

# The libraries installed here against the ranges pyproject.toml declares: one warning per problem (course_lib.versions).
from course_lib.versions import check_versions  # noqa: E402 (after the filter above, by design)
check_versions()
