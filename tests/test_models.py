import time

import pytest
import torch

from course_lib.core import HubUnavailableError
from course_lib.models import (CLIP_MERGES, clip_tokenizer_from_bpe, clip_vocab_and_merges, load_clip_tokenizer,
                               load_sd_pipeline, tiny_sd_components, tiny_sd_pipeline)


@pytest.fixture(scope="module")
def tokenizer(bpe_path): return clip_tokenizer_from_bpe(bpe_path)


def test_seed_prompt_ids_match_stable_diffusion(tokenizer):
    out = tokenizer("A photograph of a puppy", padding="max_length", truncation=True, return_tensors="pt")
    assert out.input_ids.shape == (1, 77)
    assert out.input_ids[0, :8].tolist() == [49406, 320, 8853, 539, 320, 6829, 49407, 49407]
    assert (out.input_ids[0, 7:] == 49407).all() and out.attention_mask[0].sum() == 7
    assert tokenizer.convert_ids_to_tokens([320, 8853, 6829]) == ["a</w>", "photograph</w>", "puppy</w>"]


def test_vocab_layout(bpe_path):
    vocab, merges = clip_vocab_and_merges(bpe_path)
    assert len(vocab) == 49408 and len(merges) == CLIP_MERGES == 48894
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["<|startoftext|>"] == 49406
    assert vocab["".join(merges[0])] == 512 and vocab["".join(merges[-1])] == 49405


def test_bad_bpe_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="COURSE_CLIP_BPE"): clip_tokenizer_from_bpe(tmp_path / "none.txt.gz")
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(ValueError, match="`bpe_path`=.*not a readable gzip"): clip_tokenizer_from_bpe(tmp_path / "plain.txt.gz")
    import gzip; (tmp_path / "short.txt.gz").write_bytes(gzip.compress(b"header\na b\n"))
    with pytest.raises(ValueError, match="not CLIP's merge list"): clip_tokenizer_from_bpe(tmp_path / "short.txt.gz")


def test_load_clip_tokenizer_offline_uses_the_local_bpe(offline_hub, bpe_path, capsys):
    start = time.perf_counter()
    tok = load_clip_tokenizer(model_id="openai/clip-vit-large-patch14", bpe_path=bpe_path)
    assert time.perf_counter() - start < 3
    assert tok.model_max_length == 77 and len(tok) == 49408
    assert "local merge list" in capsys.readouterr().out
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1(?s:.*)COURSE_CLIP_BPE"):
        load_clip_tokenizer(model_id="openai/clip-vit-large-patch14", bpe_path="/nonexistent/bpe.txt.gz")


def test_tiny_components_are_seeded_and_leave_global_rng_alone(tokenizer):
    torch.manual_seed(123); expected = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_sd_components(seed=1, tokenizer=tokenizer)
    assert torch.equal(torch.rand(1), expected)
    b = tiny_sd_components(seed=1, tokenizer=tokenizer)
    c = tiny_sd_components(seed=2, tokenizer=tokenizer)
    w = lambda comps: comps["unet"].conv_in.weight
    assert torch.equal(w(a), w(b)) and not torch.equal(w(a), w(c))
    assert a["scheduler"].config.steps_offset == 1 and a["scheduler"].config.skip_prk_steps


def test_tiny_pipeline_round_trips_through_save_pretrained(tmp_path, tokenizer, offline_hub):
    pipe = tiny_sd_pipeline(seed=0, tokenizer=tokenizer, device="cpu")
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    pipe.save_pretrained(tmp_path / "tiny")
    loaded = load_sd_pipeline(tmp_path / "tiny", device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    assert loaded.safety_checker is None
    run = lambda p: p("a puppy", num_inference_steps=2, height=64, width=64, output_type="pt",
                      generator=torch.Generator().manual_seed(0)).images
    first = run(pipe)
    assert first.shape == (1, 3, 64, 64) and torch.equal(first, run(pipe)) and torch.equal(first, run(loaded))


def test_hub_checkpoint_fails_fast_offline(offline_hub):
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="stable-diffusion-v1-5(?s:.*)tiny_sd_pipeline"):
        load_sd_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", device="cpu")
    assert time.perf_counter() - start <= 2.0
