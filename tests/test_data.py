import gzip
import struct
import time

import datasets
import numpy as np
import pytest
import torch

from course_lib.data import (FASHION_CLASSES, IDX_STEMS, fashion_tensors, load_fashion_mnist, load_hub_fashion,
                             load_local_fashion, load_offline_fashion, read_idx)
from course_lib.colour_fashion import (CLASS_NOUNS, PALETTE, PATTERN_WORDS, colour_captions, draw_colour_fashion,
                                       garment_colours, load_colour_fashion)
from course_lib.garments import PATTERNS, draw_fashion
from conftest import fashion_label_file
from course_lib.core import SOURCES_USED


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# --- IDX ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, count", [("train-labels-idx1-ubyte.gz", 60000), ("t10k-labels-idx1-ubyte.gz", 10000)])
def test_read_idx_real_label_files(name, count):
    labels = read_idx(fashion_label_file(name))  # checks the official md5 too
    assert labels.shape == (count,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [count // 10] * 10  # Fashion-MNIST is balanced


def test_read_idx_raw_and_gz(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), array)
    ints = struct.pack(">BBBBI", 0, 0, 0x0C, 1, 2) + struct.pack(">2i", -5, 70000)  # big-endian int32
    (tmp_path / "i.idx").write_bytes(ints)
    assert read_idx(tmp_path / "i.idx").tolist() == [-5, 70000]


@pytest.mark.parametrize("mangle, message", [
    (lambda raw: raw[:-1], "truncated"), (lambda raw: raw + b"\0", "too long"),
    (lambda raw: b"\1" + raw[1:], "bad magic number"), (lambda raw: raw[:2] + b"\x07" + raw[3:], "bad magic number"),
    (lambda raw: raw[:6], "truncated inside its header"), (lambda raw: b"", "empty file")])
def test_read_idx_rejects_broken_files(tmp_path, mangle, message):
    (tmp_path / "x.idx").write_bytes(mangle(idx_bytes(np.zeros((2, 2), np.uint8))))
    with pytest.raises(ValueError, match=message): read_idx(tmp_path / "x.idx")


def test_read_idx_truncated_gzip_and_wrong_md5(tmp_path):
    real = fashion_label_file("t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(real[: len(real) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"): read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    tampered = gzip.decompress(real); tampered = tampered[:-1] + bytes([(tampered[-1] + 1) % 10])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(ValueError, match="its md5 is .* not bb300cfdad3c16e7a12a480ee83cd310"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", check_md5=False)[-1] == tampered[-1]


# --- the three sources ----------------------------------------------------------------------------------------------
def write_local_split(folder, split, n=6, gz=False):
    "Small IDX files under the official names; unpacked ones (as torchvision keeps them) have no official md5."
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for stem, array in zip(IDX_STEMS[split], (images, labels)):
        if gz: (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else: (folder / stem).write_bytes(idx_bytes(array))
    return images, labels


def check_fashion_dataset(ds):
    assert ds.features["label"].names == FASHION_CLASSES
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds[0]["image"].mode == "L" and ds[0]["image"].size == (28, 28)


@pytest.mark.parametrize("layout", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_local_source_finds_files_in_the_usual_places(tmp_path, layout):
    images, labels = write_local_split(tmp_path / layout, "test")
    ds = load_fashion_mnist("test", source="local", data_dir=tmp_path, verbose=False)
    check_fashion_dataset(ds)
    assert ds["label"] == labels.tolist()
    x, y = fashion_tensors(ds, "cpu")
    assert torch.equal(x, torch.from_numpy(images)) and y.tolist() == labels.tolist()


def test_local_source_rejects_mismatched_files(tmp_path):
    write_local_split(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match="do not match"): load_local_fashion("test", tmp_path, check_md5=False)


def test_official_names_with_other_contents_are_rejected(tmp_path):
    write_local_split(tmp_path, "test", gz=True)
    assert len(load_local_fashion("test", tmp_path, check_md5=False)) == 6
    with pytest.raises(ValueError, match="md5"): load_local_fashion("test", tmp_path)


def test_hub_source_fails_fast_offline(offline_hub):
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="zalando-datasets/fashion_mnist.*\n"
                                              ".*source='local'.*source='offline'.*COURSE_DATA_SOURCE"):
        load_fashion_mnist("test", source="hub")
    assert time.perf_counter() - start <= 2.0


def test_hub_source_casts_the_hub_class_names(tmp_path):
    hub_names = ["T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=hub_names)})
    images = [np.full((28, 28), i, np.uint8) for i in range(4)]
    copy = datasets.Dataset.from_dict({"image": images, "label": [0, 3, 7, 9]}, features=features)
    (tmp_path / "data").mkdir(); copy.to_parquet(str(tmp_path / "data" / "test-00000-of-00001.parquet"))
    ds = load_hub_fashion("test", hub_id=str(tmp_path))  # load_dataset reads a folder in the Hub's layout
    check_fashion_dataset(ds)
    assert ds["label"] == [0, 3, 7, 9] and np.asarray(ds[2]["image"]).max() == 2


def test_auto_never_falls_back_to_offline_silently(offline_hub, tmp_path, monkeypatch):
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path)  # no Keras cache either
    with pytest.raises(FileNotFoundError, match="(?s)- hub:.*- local:.*source='offline'"):
        load_fashion_mnist("train", source="auto", data_dir=tmp_path)
    write_local_split(tmp_path, "train")
    assert "local IDX files" in load_fashion_mnist("train", source="auto", data_dir=tmp_path).info.description


def test_sources_are_announced_and_recorded(tmp_path, capsys):
    write_local_split(tmp_path, "test")
    already = len(SOURCES_USED)
    load_fashion_mnist("test", source="local", data_dir=tmp_path)
    load_fashion_mnist("test", source="offline", seed=0)
    out = capsys.readouterr().out
    assert "Fashion-MNIST test (6 images) from local IDX files" in out
    assert "from offline: the course's procedural Fashion-like set" in out
    assert {("Fashion data", "the real Fashion-MNIST's IDX files"),
            ("Fashion data", "the offline set drawn here, not the real Fashion-MNIST")} <= set(SOURCES_USED)
    del SOURCES_USED[already:]  # this test's records are not the session's


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`source` must be one of 'auto', 'hub', 'local', 'offline'; got 'kaggle'"):
        load_fashion_mnist("train", source="kaggle")
    with pytest.raises(ValueError, match="`split` must be one of 'train', 'test'"): load_offline_fashion("val")


# --- the offline set ------------------------------------------------------------------------------------------------
def test_offline_set_is_deterministic_balanced_and_varied():
    images, labels = draw_fashion(500, seed=3)
    again, labels_again = draw_fashion(500, seed=3)
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert not torch.equal(images, draw_fashion(500, seed=4)[0])
    assert torch.bincount(labels).tolist() == [50] * 10
    for c in range(10):
        group = images[labels == c].float()
        assert group.mean() > 10, f"class {c} is nearly empty"
        assert group.std(0).mean() > 12, f"class {c} has too little variety"  # size, position, texture vary
    ink = torch.stack([(images[labels == c] > 0).float().mean() for c in range(10)])
    assert ink[5] < ink[8] and ink[5] < ink[4]  # sandals are mostly straps; bags and coats mostly fabric


def test_offline_splits_full_size_cached_and_reloaded(tmp_path):
    start = time.perf_counter()
    test = load_offline_fashion("test", seed=0, cache_dir=tmp_path)
    first = time.perf_counter() - start
    check_fashion_dataset(test)
    assert len(test) == 10_000
    start = time.perf_counter()
    again = load_offline_fashion("test", seed=0, cache_dir=tmp_path)
    assert time.perf_counter() - start < first and again["label"] == test["label"]
    assert [p.name for p in tmp_path.iterdir()] == ["fashion-offline-v1-seed0-test-10000"]  # nothing half-written
    train = load_offline_fashion("train", seed=0, cache_dir=tmp_path)
    assert len(train) == 60_000 and np.bincount(train["label"]).tolist() == [6000] * 10
    assert not np.array_equal(np.asarray(train[0]["image"]), np.asarray(test[0]["image"]))


# --- attributes and the colour variant (chapter 5) --------------------------------------------------------------------
def test_the_grayscale_set_keeps_its_pixels_and_reveals_its_attributes():
    import hashlib
    images, labels, attributes = draw_fashion(2000, seed=(0, 0), with_attributes=True)
    digest = hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
    # as drawn before attributes existed
    assert digest == "c2b58d36dfb6db24f5ceb2238b860de4a30a57818c74d105573fad027ece44c7"
    assert sorted(attributes) == ["brightness", "pattern", "size"] and all(len(v) == 2000 for v in attributes.values())
    assert set(attributes["pattern"].tolist()) == set(range(len(PATTERNS))) and 0.3 <= attributes["brightness"].min()
    assert torch.equal(draw_fashion(2000, seed=(0, 0))[0], images)


def test_colour_garments_are_measured_as_drawn_and_captioned_truly():
    images, labels, attributes = draw_colour_fashion(1000, seed=3)
    assert images.shape == (1000, 32, 32, 3) and set(attributes) == {"colour", "pattern", "size"}
    assert (garment_colours(images) == attributes["colour"]).float().mean() > 0.98
    assert torch.equal(draw_colour_fashion(1000, seed=3)[0], images)
    gray = draw_fashion(1000, seed=3, size=32, coarse_patterns=True)[0]
    assert torch.equal(images.amax(-1) > 0, gray > 0)  # the same garments, coloured
    fine = draw_fashion(1000, seed=3, size=32)[0]
    assert ((fine > 0) == (gray > 0)).float().mean() > 0.99 and not torch.equal(fine, gray)  # other cloth, same shapes
    captions = colour_captions(labels, attributes["colour"], attributes["pattern"], "test", seed=1)
    for caption, label, colour, pattern in zip(captions, labels, attributes["colour"], attributes["pattern"]):
        words = f" {caption} "
        assert [c for c in PALETTE if f" {c} " in words] in ([], [list(PALETTE)[colour]]), caption
        assert any(f" {noun} " in words for noun in CLASS_NOUNS[label]), caption
        said = {p for p, names in enumerate(PATTERN_WORDS) if any(f" {n} " in words for n in names)}
        # "striped" fits either stripes
        assert said <= {int(pattern)} | ({1, 2} if pattern in (1, 2) else set()), caption
        assert caption.split()[0] in ("an", "here", "my") and " a a" not in caption and " a o" not in caption


def test_colour_set_is_a_cached_dataset_with_attribute_columns(tmp_path):
    ds = load_colour_fashion("train", cache_dir=tmp_path, n=50)
    assert list(ds.features) == ["image", "label", "colour", "pattern", "size", "caption"]
    assert ds.features["colour"].names == list(PALETTE) and ds[0]["image"].mode == "RGB"
    again = load_colour_fashion("train", cache_dir=tmp_path, n=50)
    assert again["caption"] == ds["caption"] and len(list(tmp_path.iterdir())) == 1
