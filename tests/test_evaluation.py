import numpy as np
import pytest
import torch

from course_lib.conditioning import make_class_unet
from course_lib.garments import draw_fashion
from course_lib.evaluation import (class_accuracy, classifier_outputs, fashion_classifier, fid, frechet_distance,
                                   guidance_sweep, train_classifier)
from course_lib.models import make_scheduler
from course_lib.training import unit_images


@pytest.fixture(scope="module")
def split():
    "3,000 drawn training images and 1,000 test images (uint8 N×28×28) with labels."
    return draw_fashion(3000, seed=(5, 0)), draw_fashion(1000, seed=(5, 1))


@pytest.fixture(scope="module")
def judge(split):
    (images, labels), _ = split
    return train_classifier(images, labels, epochs=2, device="cpu", progress=False)


def test_the_judge_learns_the_classes(split, judge):
    _, (test_images, test_labels) = split
    accuracy = class_accuracy(judge, unit_images(test_images), test_labels)
    assert accuracy > 0.8, accuracy  # 3,000 images, 2 epochs; chance is 0.1
    predicted, features = classifier_outputs(judge, unit_images(test_images[:10]))
    assert predicted.shape == (10,) and features.shape == (10, 64) and features.dtype == torch.float64


def test_the_judge_is_cached_per_dataset(split, tmp_path):
    (images, labels), _ = split
    first = fashion_classifier(images[:500], labels[:500], epochs=1, cache_dir=tmp_path, device="cpu", progress=False)
    cached = list((tmp_path / "models").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".safetensors"
    again = fashion_classifier(images[:500], labels[:500], epochs=1, cache_dir=tmp_path, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    fashion_classifier(images[:400], labels[:400], epochs=1, cache_dir=tmp_path, device="cpu", progress=False)
    assert len(list((tmp_path / "models").iterdir())) == 2  # other data, other judge


def test_classifier_inputs_are_checked(judge):
    with pytest.raises(ValueError, match=r"`images` must be in \[0, 1\]"):
        class_accuracy(judge, -torch.ones(2, 1, 32, 32), [0, 1])
    with pytest.raises(ValueError, match="`images` must be N×1×32×32"):
        class_accuracy(judge, torch.zeros(2, 28, 28), [0, 1])


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    assert frechet_distance(a, rng.normal(size=(20000, 4))) == pytest.approx(0, abs=0.01)
    assert frechet_distance(a, rng.normal(size=(20000, 4)) + [3, 0, 0, 0]) == pytest.approx(9, abs=0.1)
    # N(0, 1) vs N(0, 9) per dim: 1 + 9 - 2*3 = 4, times 4 dims
    assert frechet_distance(a, rng.normal(size=(20000, 4)) * 3) == pytest.approx(16, abs=0.4)
    with pytest.raises(ValueError, match="`features_a` and `features_b` must be N×F"): frechet_distance(a, a[:, :3])


def test_fid_ranks_real_images_above_noise(split, judge):
    (images, _), (test_images, _) = split
    reference = unit_images(test_images)
    real = fid(judge, unit_images(images[:500]), reference)
    noise = fid(judge, torch.rand(500, 1, 32, 32), reference)
    assert 0 <= real < noise / 5, (real, noise)


def test_guidance_sweep_reports_every_scale(split, judge):
    _, (test_images, _) = split
    table = guidance_sweep(make_class_unet("smoke"), make_scheduler("ddim"), judge, unit_images(test_images[:200]),
                           scales=(0, 1, 4), n_per_class=2, num_inference_steps=3, progress=False)
    assert list(table.columns) == ["guidance scale", "class accuracy", "FID", "samples", "seconds"]
    assert list(table["guidance scale"]) == [0, 1, 4] and (table["samples"] == 20).all()
    assert table["class accuracy"].between(0, 1).all() and (table["FID"] > 0).all()


def test_committed_guidance_sweep_ships_and_is_the_bench_result():
    "01b plots the committed sweep when its slow cells do not run: the package's copy must be bench/results' JSON."
    import json
    from pathlib import Path
    from course_lib.evaluation import committed_guidance_sweep
    table, facts = committed_guidance_sweep()
    results = Path(__file__).resolve().parent.parent / "bench" / "results"
    committed = json.loads((results / "class_guidance.json").read_text())
    assert table.to_dict(orient="list") == committed["table"]
    assert facts["command"].endswith("--shipped --out bench/results")
    assert list(table["guidance scale"]) == [0, 1, 2, 3, 5, 7.5] and set(table["samples"]) == {200}
    assert facts["figures"]["class accuracy at guidance 3"] == f"{table['class accuracy'][3]:.1%}"
