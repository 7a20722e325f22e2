import pytest

from course_lib.models import clip_tokenizer_from_bpe, make_scheduler, tiny_sd_pipeline
from course_lib.sampling import generate
from course_lib.widgets import GUIDANCE_RANGE, guidance_explorer, png_bytes

SIZE = dict(height=64, width=64)


@pytest.fixture(scope="module")
def pipe(bpe_path): return tiny_sd_pipeline(seed=0, tokenizer=clip_tokenizer_from_bpe(bpe_path), device="cpu")


@pytest.fixture(params=[False, True], ids=["plain", "fast"])
def explorer(pipe, request):
    """A panel on the plain path and one on the fast path (on a CPU: channels_last, no compiler), for every behaviour
    test."""
    return guidance_explorer(pipe, "a red cube", seed=3, num_inference_steps=4, fast=request.param, **SIZE)


def test_first_image_is_generate_output(pipe, explorer):
    expected = generate(pipe, "a red cube", seed=3, num_inference_steps=4, progress=False, fast=explorer.fast,
                        **SIZE)[0]
    assert explorer.image.value == png_bytes(expected)
    assert (explorer.draws, explorer.encodes) == (1, 1)
    assert "guidance 7.5 · seed 3 · 4 steps" in explorer.status.value and " s per image" in explorer.status.value


@pytest.mark.parametrize("control, value", [("guidance", 2.0), ("guidance", 0.0), ("seed", 4), ("steps", 6),
                                            ("prompt", "a blue sphere"), ("negative", "blurry")])
def test_picture_controls_redraw_once_and_change_pixels(explorer, control, value):
    before = explorer.image.value
    explorer.controls[control].value = value
    assert explorer.draws == 2
    assert explorer.image.value != before
    assert explorer.history[0][0] == before


def test_a_slider_clicked_but_not_moved_does_not_redraw(explorer):
    step = explorer.controls["guidance"].step
    explorer.controls["guidance"].value += 1e-12  # what the browser sends back for 7.5 when the handle is clicked
    explorer.controls["guidance"].value -= step / 4
    assert explorer.draws == 1
    explorer.controls["guidance"].value += step  # one step: a move
    assert explorer.draws == 2


def test_a_long_status_wraps_under_the_image(explorer):
    assert explorer.status.layout.width == f"{explorer.image_size}px"


def test_unrelated_control_and_unchanged_values_do_not_redraw(explorer):
    for scale in (2.0, 3.0, 4.0): explorer.controls["guidance"].value = scale
    before, draws = explorer.image.value, explorer.draws
    explorer.controls["keep"].value = 1
    explorer.controls["seed"].value = explorer.controls["seed"].value
    assert (explorer.draws, explorer.image.value) == (draws, before)
    assert len(explorer.history) == len(explorer.history_box.children) == 1


def test_embeddings_are_cached_per_prompt_pair(explorer):
    explorer.controls["guidance"].value = 3.0
    explorer.controls["seed"].value = 9
    explorer.controls["steps"].value = 2
    assert explorer.encodes == 1
    explorer.controls["prompt"].value = "a blue sphere"
    explorer.controls["prompt"].value = "a red cube"
    assert (explorer.encodes, len(explorer.embedding_cache)) == (2, 2)


def test_new_seed_button(explorer):
    seeds = []
    for _ in range(3):
        explorer.controls["new_seed"].click()
        seeds.append(explorer.controls["seed"].value)
    assert len(set(seeds + [3])) == 4 and explorer.draws == 4
    assert all(0 <= s < 2**32 for s in seeds)


def test_same_settings_same_pixels(pipe):
    a = guidance_explorer(pipe, "a red cube", seed=5, num_inference_steps=3, **SIZE)
    b = guidance_explorer(pipe, "a red cube", seed=5, num_inference_steps=3, **SIZE)
    assert a.image.value == b.image.value
    a.draw()
    assert a.image.value == b.image.value


def test_errors_are_shown_in_the_panel(pipe, explorer):
    class Broken:
        config = pipe.scheduler.config
        def set_timesteps(self, *args, **kwargs): raise RuntimeError("broken on purpose")
    good = explorer.image.value
    explorer.scheduler = Broken()
    explorer.controls["guidance"].value = 5.0
    assert isinstance(explorer.last_error, RuntimeError)
    assert "RuntimeError: broken on purpose" in explorer.status.value
    assert explorer.image.value == good and explorer.draws == 1
    explorer.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    explorer.controls["guidance"].value = 6.0
    assert explorer.last_error is None and explorer.image.value != good


def test_truncation_warning_is_shown(explorer):
    explorer.controls["prompt"].value = " ".join(["a very long prompt"] * 30)
    assert "dropped" in explorer.status.value and explorer.last_error is None


def test_slider_range_and_release_only(explorer):
    guidance = explorer.controls["guidance"]
    assert ((guidance.min, guidance.max, guidance.step) == (GUIDANCE_RANGE["min"], GUIDANCE_RANGE["max"], 0.5)
            == (0, 15, 0.5))
    assert not any(explorer.controls[k].continuous_update for k in ("prompt", "negative", "guidance", "steps"))


def test_progress_follows_scheduler_calls(explorer):
    explorer.controls["steps"].value = 5  # PNDM (SD 1.5's default): one more UNet call than steps
    assert (explorer.progress.value, explorer.progress.max) == (6, 6)


def test_snapshot_shows_image_and_history(explorer):
    explorer.controls["guidance"].value = 1.0
    fig = explorer.snapshot()
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title().startswith("now: guidance 1")


def test_draw_false_waits(pipe):
    quiet = guidance_explorer(pipe, "a cat", draw=False, **SIZE)
    assert (quiet.draws, quiet.image.value) == (0, b"")
    quiet.controls["keep"].value = 2  # not a picture control: still nothing drawn
    assert quiet.draws == 0
    quiet.draw()
    assert quiet.draws == 1 and quiet.image.value[:4] == b"\x89PNG"



def test_accepts_a_dict_of_components(pipe, explorer):
    from course_lib.sampling import sd_parts
    from_parts = guidance_explorer(sd_parts(pipe), "a red cube", seed=3, num_inference_steps=4, **SIZE)
    assert from_parts.image.value == explorer.image.value
    with pytest.raises(ValueError, match="unet"):
        guidance_explorer({"vae": pipe.vae}, "a red cube", **SIZE)
