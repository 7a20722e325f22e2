import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from course_lib.core import DEFAULTS_FILE, SOURCES_USED, HubUnavailableError, read_settings
from course_lib.models import (CLIP_MERGES, PACKAGED_CLIP_BPE, clip_tokenizer_from_bpe, clip_vocab_and_merges,
                               find_clip_bpe, load_clip_tokenizer, load_sd_pipeline, tiny_sd_components,
                               tiny_sd_pipeline)
from conftest import ROOT

CLIP_BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"  # openai/CLIP's file


@pytest.fixture(scope="module")
def tokenizer(bpe_path): return clip_tokenizer_from_bpe(bpe_path)


def test_the_original_chapters_prompt_ids_match_stable_diffusion(tokenizer):
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
    with pytest.raises(FileNotFoundError, match="No CLIP merge list at .*none.txt.gz \\(from argument\\)"):
        clip_tokenizer_from_bpe(tmp_path / "none.txt.gz")
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(ValueError, match="`bpe_path`=.*not a readable gzip"):
        clip_tokenizer_from_bpe(tmp_path / "plain.txt.gz")
    import gzip; (tmp_path / "short.txt.gz").write_bytes(gzip.compress(b"header\na b\n"))
    with pytest.raises(ValueError, match="not CLIP's merge list"): clip_tokenizer_from_bpe(tmp_path / "short.txt.gz")


def test_load_clip_tokenizer_offline_uses_the_packaged_bpe(offline_hub, monkeypatch, capsys):
    monkeypatch.delenv("COURSE_CLIP_BPE", raising=False)
    start = time.perf_counter()
    tok = load_clip_tokenizer(model_id="openai/clip-vit-large-patch14")
    assert time.perf_counter() - start < 3
    assert tok.model_max_length == 77 and len(tok) == 49408
    assert "CLIP tokenizer from the merge list shipped in course_lib" in capsys.readouterr().out
    assert ("CLIP tokenizer", "merge list shipped in course_lib") in SOURCES_USED
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1(?s:.*)No CLIP merge list at /nonexistent"):
        load_clip_tokenizer(model_id="openai/clip-vit-large-patch14", bpe_path="/nonexistent/bpe.txt.gz")


# --- the merge list shipped inside the package ------------------------------------------------------------------------
def test_packaged_merge_list_is_clips_own_file_with_its_notice():
    assert hashlib.sha256(PACKAGED_CLIP_BPE.read_bytes()).hexdigest() == CLIP_BPE_SHA256
    notice = (PACKAGED_CLIP_BPE.parent / "NOTICE-CLIP.md").read_text()
    assert "github.com/openai/CLIP" in notice and "MIT License" in notice and "Copyright (c) 2021 OpenAI" in notice
    assert CLIP_BPE_SHA256 in notice
    assert read_settings(DEFAULTS_FILE)["data"]["clip_bpe"] == ""  # no setting: the packaged copy


def test_tokenizer_from_the_packaged_file_with_no_settings_and_no_environment(tmp_path):
    "A fresh process in an empty folder, with no COURSE_*/HF_* variables: the tokenizer needs nothing set up."
    script = ("from course_lib.core import settings\n"
              "from course_lib.models import clip_tokenizer_from_bpe, find_clip_bpe, PACKAGED_CLIP_BPE\n"
              "assert settings.get('clip_bpe') == '' and find_clip_bpe() == PACKAGED_CLIP_BPE\n"
              "print(clip_tokenizer_from_bpe()('A photograph of a puppy').input_ids)")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[49406, 320, 8853, 539, 320, 6829, 49407]"


def test_your_own_merge_list_wins_over_the_packaged_one(tmp_path, monkeypatch):
    mine = tmp_path / "mine.txt.gz"; mine.write_bytes(PACKAGED_CLIP_BPE.read_bytes())
    monkeypatch.setenv("COURSE_CLIP_BPE", str(mine))
    assert find_clip_bpe() == mine and find_clip_bpe(PACKAGED_CLIP_BPE) == PACKAGED_CLIP_BPE  # an argument beats both
    assert clip_tokenizer_from_bpe()("a puppy").input_ids == [49406, 320, 6829, 49407]
    assert ("CLIP tokenizer", f"merge list {mine}") in SOURCES_USED
    monkeypatch.setenv("COURSE_CLIP_BPE", str(tmp_path / "gone.txt.gz"))  # a path you name must exist: no fall-back
    with pytest.raises(FileNotFoundError, match="gone.txt.gz \\(from environment variable COURSE_CLIP_BPE\\)"):
        clip_tokenizer_from_bpe()


def test_the_wheel_carries_the_merge_list_its_notice_and_the_shipped_models(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing behind in the checkout
    shutil.copytree(ROOT / "course_lib", source / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"): shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("course_lib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"course_lib/assets/bpe_simple_vocab_16e6.txt.gz", "course_lib/assets/NOTICE-CLIP.md"} <= set(names)
    packaged_bpe = zipfile.ZipFile(wheel).read("course_lib/assets/bpe_simple_vocab_16e6.txt.gz")
    assert packaged_bpe == PACKAGED_CLIP_BPE.read_bytes()
    shipped = {str(f.relative_to(ROOT)) for f in (ROOT / "course_lib" / "pretrained").rglob("*") if f.is_file()}
    assert shipped and shipped <= set(names)  # every shipped model, its weights, configs and card


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
