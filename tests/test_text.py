import gzip, json, re, warnings

import pytest
import torch
from transformers import CLIPTextModel

from course_lib.core import HubUnavailableError
from course_lib.models import TINY_TEXT_ENCODER, clip_tokenizer_from_bpe, tiny_sd_pipeline
from course_lib.text import (PromptTruncatedWarning, bpe_steps, dropped_text, encode_prompt, merge_ranks,
                             prompt_similarity, text_encoder_config, tiny_text_encoder, token_table, tokenize)
from course_lib.text_encoders import (CAPTION_TEMPLATES, caption_accuracy, caption_encoder, caption_encoder_path,
                                      fashion_captions)
from course_lib.models import load_text_encoder


@pytest.fixture(scope="module")
def tokenizer(bpe_path): return clip_tokenizer_from_bpe(bpe_path)


@pytest.fixture(scope="module")
def pipe(tokenizer): return tiny_sd_pipeline(seed=0, tokenizer=tokenizer, device="cpu")


def test_the_original_chapters_prompt_gives_its_ids(tokenizer):
    table = token_table(tokenizer, "A photograph of a puppy")
    assert table.id.tolist() == [49406, 320, 8853, 539, 320, 6829, 49407, 49407]
    assert table.token.tolist()[1:6] == ["a</w>", "photograph</w>", "of</w>", "a</w>", "puppy</w>"]
    assert table.attention_mask.tolist() == [1] * 7 + [0]
    assert len(token_table(tokenizer, "a cat", n=77)) == 77


# An oracle written from the published merge list alone, the way OpenAI's simple_tokenizer.py applies it, for
# ASCII text (where byte-level BPE's character table is the identity on '!'..'~').
def reference_ids(bpe_path, text: str) -> list[int]:
    merges = [tuple(line.split()) for line in gzip.open(bpe_path, "rt").read().split("\n")[1:48894 + 1]]
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    vocab = {chr(33 + i): i for i in range(94)} | {chr(33 + i) + "</w>": 256 + i for i in range(94)}
    vocab |= {a + b: 512 + rank for rank, (a, b) in enumerate(merges)}
    ids = [49406]
    for token in re.findall(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower()):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            bigram = min(zip(word, word[1:]), key=lambda pair: ranks.get(pair, float("inf")))
            if bigram not in ranks: break
            new, i = [], 0
            while i < len(word):
                if word[i:i + 2] == bigram: new.append(word[i] + word[i + 1]); i += 2
                else: new.append(word[i]); i += 1
            word = tuple(new)
        ids += [vocab[piece] for piece in word]
    return ids + [49407]


@pytest.mark.parametrize("prompt", ["A photograph of an astronaut riding a horse",
                                    "Bioluminescent jellyfish, hyperrealistic!!",
                                    "don't stop the 42 axolotls",
                                    "an oil painting by greg rutkowski, trending on artstation",
                                    "a red cube on top of a blue sphere; 8k, octane render"])
def test_ids_equal_bpe_derived_from_the_merge_list(tokenizer, bpe_path, prompt):
    expected = reference_ids(bpe_path, prompt)
    assert tokenizer(prompt).input_ids == expected
    ids = tokenize(tokenizer, prompt).input_ids[0].tolist()
    assert ids[:len(expected)] == expected and set(ids[len(expected):]) == {49407}


def test_bpe_steps_replay_the_tokenizer(tokenizer):
    ranks = merge_ranks(tokenizer)
    spelled = lambda symbols: symbols.replace(" ", "").replace("</w>", "")
    for word in ["bioluminescent", "axolotl", "puppy", "rutkowski", "café"]:
        steps = bpe_steps(tokenizer, word, ranks)
        assert steps.symbols.iloc[-1].split(" ") == tokenizer.convert_ids_to_tokens(tokenizer(word).input_ids[1:-1])
        assert spelled(steps.symbols.iloc[0]) == spelled(steps.symbols.iloc[-1])
        merged = steps["rank"].dropna().tolist()
        assert merged == sorted(merged) and len(merged) == len(steps) - 1  # each merge was learned after the last
    with pytest.raises(ValueError, match="`word` must be one word"): bpe_steps(tokenizer, "two words", ranks)


def test_long_prompts_warn_with_the_dropped_words(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exactly 75 prompt tokens fit
        assert tokenize(tokenizer, "a " * 75).input_ids[0, -1] == 49407
    with pytest.warns(PromptTruncatedWarning, match="dropped: 'purple elephant'"):
        ids = tokenize(tokenizer, "a " * 75 + "purple elephant").input_ids
    assert ids.shape == (1, 77) and ids[0, -1] == 49407 and (ids[0, 1:76] == 320).all()
    assert dropped_text(tokenizer, ["a cat", "a " * 80]) == ["", "a a a a a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(tokenizer, "a " * 90, warn=False)


def test_attention_mask_marks_real_tokens(tokenizer):
    tokens = tokenize(tokenizer, ["a cat", "A photograph of a puppy", ""])
    assert tokens.attention_mask.sum(1).tolist() == [4, 7, 2]
    assert tokens.attention_mask.shape == tokens.input_ids.shape == (3, 77)
    assert (tokens.input_ids[tokens.attention_mask == 0] == 49407).all()


@pytest.mark.parametrize("bad", [42, None, [], ["a cat", 3], {"a": 1}])
def test_bad_prompts_are_value_errors(tokenizer, bad):
    with pytest.raises(ValueError, match="`prompt` must be a string or a non-empty list"): tokenize(tokenizer, bad)
    with pytest.raises(ValueError, match="`prompt` must be"): encode_prompt(tokenizer, tiny_text_encoder(), bad)


def test_other_bad_arguments(tokenizer):
    encoder = tiny_text_encoder()
    with pytest.raises(ValueError, match="`negative_prompt` has 1 prompts and `prompt` has 2"):
        encode_prompt(tokenizer, encoder, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="`negative_prompt` must be"): encode_prompt(tokenizer, encoder, "a", 7)
    with pytest.raises(ValueError, match="`n` must be an int from 1 to 77"): token_table(tokenizer, "a cat", n=0)
    with pytest.raises(ValueError, match="`kind` must be one of 'sd1', 'sd2'"): text_encoder_config("sd3")
    with pytest.raises(ValueError, match="`split` must be"): fashion_captions(3, "valid")


@pytest.mark.parametrize("kind,width", [("sd1", 768), ("sd2", 1024)])
def test_embedding_shapes_and_pooled_vector(tokenizer, kind, width):
    torch.manual_seed(0)
    encoder = CLIPTextModel(text_encoder_config(kind, num_hidden_layers=1)).eval()
    ids = tokenize(tokenizer, ["A photograph of a puppy", "a cat"]).input_ids
    with torch.no_grad(): out = encoder(ids)
    assert out[0].shape == (2, 77, width) and out.pooler_output.shape == (2, width)
    assert torch.equal(out.pooler_output[0], out[0][0, 6]) and torch.equal(out.pooler_output[1], out[0][1, 3])


def test_full_configs_have_the_real_sizes():
    with torch.device("meta"):
        sizes = {kind: sum(p.numel() for p in CLIPTextModel(text_encoder_config(kind)).parameters())
                 for kind in ("sd1", "sd2")}
    assert sizes["sd1"] == 123_060_480  # CLIP ViT-L/14's text tower, as in SD 1.x's text_encoder
    assert 340e6 < sizes["sd2"] < 341e6


@pytest.mark.parametrize("prompt,negative", [("A photograph of a puppy", ""), ("a cat", "blurry, low quality"),
                                             (["a cat", "a dog", "a fox"], None),
                                             (["a cat", "a dog"], ["ugly", "dark"]), ("x " * 80, "")])
def test_encode_prompt_equals_the_pipeline(pipe, prompt, negative):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptTruncatedWarning)
        uncond, cond = encode_prompt(pipe.tokenizer, pipe.text_encoder, prompt, negative)
    ref_cond, ref_uncond = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative)
    assert cond.shape == ref_cond.shape == uncond.shape and cond.shape[1:] == (77, 32)
    assert (cond - ref_cond).abs().max() <= 1e-6 and (uncond - ref_uncond).abs().max() <= 1e-6
    assert not torch.equal(cond, uncond)


def test_encode_prompt_broadcasts_one_negative_and_follows_dtype(pipe):
    uncond, cond = encode_prompt(pipe.tokenizer, pipe.text_encoder, ["a cat", "a dog"], "blurry")
    assert torch.equal(uncond[0], uncond[1]) and not torch.equal(cond[0], cond[1])
    alone = encode_prompt(pipe.tokenizer, pipe.text_encoder, "a cat", "blurry")
    assert torch.equal(alone[0][0], uncond[0]) and torch.equal(alone[1][0], cond[0])
    half = tiny_text_encoder().to(torch.bfloat16)
    assert encode_prompt(pipe.tokenizer, half, "a cat")[1].dtype == torch.bfloat16


def test_load_text_encoder_from_clip_and_sd_folders(tmp_path, pipe, capsys):
    from transformers import CLIPConfig, CLIPModel
    clip = CLIPModel(CLIPConfig(text_config=TINY_TEXT_ENCODER, projection_dim=32, vision_config=dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8)))
    clip.save_pretrained(tmp_path / "clip")
    encoder = load_text_encoder(tmp_path / "clip", device="cpu")
    assert "skipped" in capsys.readouterr().out and not encoder.training
    ids = tokenize(pipe.tokenizer, "a puppy").input_ids
    with torch.no_grad(): assert torch.equal(encoder(ids)[0], clip.text_model(ids)[0])
    pipe.save_pretrained(tmp_path / "sd")
    half = load_text_encoder(tmp_path / "sd", device="cpu", dtype=torch.float16, verbose=False)
    assert half.dtype == torch.float16
    assert torch.equal(half.embeddings.token_embedding.weight,
                       pipe.text_encoder.embeddings.token_embedding.weight.half())


def test_incomplete_text_encoder_is_refused(tmp_path):
    tiny_text_encoder(num_hidden_layers=1).save_pretrained(tmp_path / "one-layer")
    config = json.loads((tmp_path / "one-layer" / "config.json").read_text())
    (tmp_path / "one-layer" / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 2}))
    with pytest.raises(ValueError, match="no complete CLIPTextModel"): load_text_encoder(tmp_path / "one-layer")


def test_offline_load_names_the_alternatives(offline_hub):
    with pytest.raises(HubUnavailableError, match="tiny_text_encoder"):
        load_text_encoder("openai/clip-vit-large-patch14", verbose=False)


def test_similarity_table(tokenizer):
    table = prompt_similarity(tokenizer, tiny_text_encoder(), ["a cat", "a dog", "a cat"])
    assert table.shape == (3, 3) and list(table.index) == ["a cat", "a dog", "a cat"]
    assert torch.allclose(torch.tensor(table.values), torch.tensor(table.values).T, atol=1e-6)
    assert abs(table.iloc[0, 2] - 1) < 1e-5 and table.iloc[0, 1] < 1 - 1e-4


def test_captions_are_seeded_and_test_templates_are_unseen():
    train, labels = fashion_captions(200, "train", seed=3)
    assert (train, labels.tolist()) == (fashion_captions(200, "train", seed=3)[0],
                                        fashion_captions(200, "train", seed=3)[1].tolist())
    assert train != fashion_captions(200, "train", seed=4)[0] and set(labels.tolist()) == set(range(10))
    assert not set(CAPTION_TEMPLATES["train"]) & set(CAPTION_TEMPLATES["test"])


def test_caption_encoder_learns_and_is_cached(tokenizer, tmp_path):
    captions, labels = fashion_captions(300, "test")
    before = caption_accuracy(tokenizer, tiny_text_encoder(0, hidden_size=64, intermediate_size=128), captions, labels)
    model = caption_encoder(tokenizer, steps=60, cache_dir=tmp_path, device="cpu", progress=False)
    after = caption_accuracy(tokenizer, model, captions, labels)
    assert after > 0.6 and after > before + 0.3, (before, after)
    folder = caption_encoder_path(steps=60, cache_dir=tmp_path)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no half-written temporary left
    again = caption_encoder(tokenizer, steps=60, cache_dir=tmp_path, device="cpu", progress=False)
    ids = tokenize(tokenizer, "a red dress").input_ids
    with torch.no_grad(): assert torch.equal(again(ids)[0], model(ids)[0])
