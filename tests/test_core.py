import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPTokenizer

from course_lib import core
from course_lib.core import HubUnavailableError, get_device, hub_reachable, load_pretrained, make_generator, probe_url
from course_lib.images import image_arrays, image_grid, show_images


# --- device ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device("auto").type == expected


def test_device_env_override_and_argument(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cpu")
    assert get_device("cuda:1") == torch.device("cuda:1")  # the argument wins


def test_bad_or_missing_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="`device` must be 'auto', 'cpu', 'cuda'"): get_device("gpu0")
    with pytest.raises(ValueError, match="`device` must be"): get_device("meta")
    with pytest.raises(ValueError, match="no cuda device"): get_device("cuda")


def test_generator_same_seed_same_numbers():
    a = torch.randn(8, generator=make_generator(7, "cpu"))
    assert torch.equal(a, torch.randn(8, generator=make_generator(7, "cpu")))
    assert not torch.equal(a, torch.randn(8, generator=make_generator(8, "cpu")))
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match="`seed` must be a non-negative int"): make_generator(bad, "cpu")


# --- images ---------------------------------------------------------------------------------------------------------
def test_image_arrays_value_ranges():
    minus_one_to_one = torch.tensor([[-1.0, 0.0, 1.0]])
    assert image_arrays(minus_one_to_one)[0].tolist() == [[0, 128, 255]]
    zero_to_one = torch.tensor([[0.0, 0.5, 1.0]])
    assert image_arrays(zero_to_one)[0].tolist() == [[0, 128, 255]]
    assert image_arrays(zero_to_one, value_range=(0, 2))[0].tolist() == [[0, 64, 128]]
    assert image_arrays(torch.tensor([[0, 7, 255]], dtype=torch.uint8))[0].tolist() == [[0, 7, 255]]
    assert image_arrays(torch.tensor([[2.0]]))[0].tolist() == [[255]]  # clipped, never wrapped


def test_image_arrays_shapes_and_kinds():
    assert [a.shape for a in image_arrays(torch.zeros(2, 3, 5, 4))] == [(5, 4, 3)] * 2      # batch of RGB
    assert [a.shape for a in image_arrays(torch.zeros(2, 1, 5, 4))] == [(5, 4)] * 2         # batch of gray
    assert [a.shape for a in image_arrays(torch.zeros(6, 5, 4))] == [(5, 4)] * 6            # B×H×W
    assert image_arrays(torch.zeros(3, 5, 4, dtype=torch.bfloat16))[0].shape == (5, 4, 3)   # one C×H×W, bf16
    assert image_arrays(np.zeros((5, 4, 3), np.float32))[0].shape == (5, 4, 3)             # H×W×C
    assert image_arrays(np.zeros((5, 4)))[0].shape == (5, 4)
    assert image_arrays(Image.new("P", (4, 5)))[0].shape == (5, 4, 3)                      # palette -> RGB
    assert image_arrays(Image.new("L", (4, 5), 9))[0].max() == 9
    assert len(image_arrays([Image.new("RGB", (4, 4)), torch.zeros(2, 1, 4, 4), np.zeros((4, 4))])) == 4
    with pytest.raises(TypeError, match="`images` must be"): image_arrays("cat.png")
    with pytest.raises(ValueError, match="2 to 4 dims"): image_arrays(torch.zeros(1, 1, 1, 2, 2))


def test_image_grid_places_images_in_rows():
    images = torch.stack([torch.full((1, 2, 3), v / 5) for v in range(6)])  # 6 images, 2×3 each, values 0..1
    grid = image_grid(images, nrows=2)
    assert grid.size == (9, 4) and grid.mode == "L"
    pixels = np.asarray(grid)
    assert pixels[0, 0] == 0 and pixels[0, 3] == 51 and pixels[2, 0] == 153 and pixels[3, 8] == 255
    assert image_grid([Image.new("L", (2, 2)), Image.new("RGB", (2, 2))]).mode == "RGB"
    with pytest.raises(ValueError, match="cannot hold"): image_grid(images, nrows=2, ncols=2)
    with pytest.raises(ValueError, match="same height and width"): image_grid([np.zeros((2, 2)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="empty"): image_grid([])


def test_show_images_titles_and_layout():
    fig = show_images(torch.rand(5, 1, 8, 8), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6 and [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    assert fig.axes[0].images[0].get_array().shape == (8, 8)
    with pytest.raises(ValueError, match="`titles` has 2 entries for 5 images"):
        show_images(torch.rand(5, 8, 8), titles="ab")


# --- the Hub ---------------------------------------------------------------------------------------------------------
def test_offline_hub_fails_fast_naming_the_alternative(offline_hub):
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1.*\n.*COURSE_CLIP_BPE"):
        load_pretrained(CLIPTokenizer, "someone/some-model", alternative="set COURSE_CLIP_BPE to a local file")
    assert time.perf_counter() - start <= 2.0


@pytest.fixture
def silent_server():
    "A local port that accepts connections and never answers: a hub that hangs."
    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_unreachable_hub_is_detected_within_the_timeout(monkeypatch, silent_server):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(core.huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    probe_url.cache_clear()
    start = time.perf_counter()
    assert hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 1.5
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=f"{silent_server} did not answer"):
        load_pretrained(CLIPTokenizer, "someone/some-model", alternative="use the local file", )
    assert time.perf_counter() - start <= 2.5  # the probe (2 s by default) is asked once, then cached
    probe_url.cache_clear()


def test_a_local_folder_never_asks_the_hub(offline_hub, tmp_path, bpe_path):
    from course_lib.models import clip_tokenizer_from_bpe
    clip_tokenizer_from_bpe(bpe_path).save_pretrained(tmp_path)
    assert load_pretrained(CLIPTokenizer, tmp_path, alternative="-")("a").input_ids == [49406, 320, 49407]
