"""A hands-on Stable Diffusion course: class conditioning, latents, text encoders and the sampling loop, as nbdev notebooks and a tested library.

Modules:

- `course_lib.data`: One function, `load_fashion_mnist`, and three places the data can come from. Whichever you use, you get the same thing back, so the rest of the course never cares.
- `course_lib.models`: Where the course's models come from: the Hub for the real thing, a local BPE file for the real tokenizer without a network, and tiny random models built from configs for tests and offline runs."""

__version__ = "0.1.0"
