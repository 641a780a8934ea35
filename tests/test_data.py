"""edgecnn.data: datasets, splits, preprocessing, batches."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from edgecnn.data import (
    DatasetBundle,
    ImageDataset,
    Preprocess,
    SplitSpec,
    calibration_set,
    channel_stats,
    iterate_batches,
    load_dataset,
    load_fashion_mnist,
    load_imagefolder,
    make_splits,
    num_batches,
    subset,
    take,
)
from edgecnn.data import fashion_mnist as fm
from edgecnn.errors import EdgecnnError

HAVE_FASHION_MNIST = all((fm.SYSTEM_DIR / name).is_file() for name in fm.FILES)
needs_fashion_mnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST, reason=f"Fashion-MNIST not in {fm.SYSTEM_DIR}"
)


# -- Fashion-MNIST ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_home(tmp_path_factory):
    """An empty EDGECNN_HOME: Fashion-MNIST comes from the system copy, its cache goes here."""
    if not HAVE_FASHION_MNIST:
        pytest.skip(f"Fashion-MNIST not in {fm.SYSTEM_DIR}")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECNN_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def fashion(fashion_home) -> DatasetBundle:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECNN_HOME", str(fashion_home))
        return load_dataset(None)


def test_fashion_mnist_loads(fashion):
    assert fashion.name == "fashion-mnist"
    assert fashion.train.images.shape == (60000, 28, 28, 1) and fashion.train.images.dtype == np.uint8
    assert fashion.test.images.shape == (10000, 28, 28, 1)
    assert fashion.train.labels.dtype == np.int64 and len(fashion.test.labels) == 10000
    assert fashion.classes == fm.CLASSES and len(fashion.classes) == 10
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert np.bincount(fashion.train.labels).tolist() == [6000] * 10
    assert not fashion.train.images.flags.writeable
    assert str(fm.SYSTEM_DIR) in fashion.train.source


def test_fashion_mnist_hash_stable_and_cached(fashion, fashion_home, monkeypatch):
    assert fashion.train.content_hash == fm.TRAIN_CONTENT_HASH
    assert fashion.test.content_hash == fm.TEST_CONTENT_HASH
    cache = fashion_home / "datasets" / "fashion-mnist" / fm.CACHE_NAME
    assert cache.is_file()
    monkeypatch.setenv("EDGECNN_HOME", str(fashion_home))
    again = load_dataset("fashion-mnist")
    assert again.train.source == str(cache)  # the second load reads the decoded arrays
    assert again.train.content_hash == fashion.train.content_hash
    assert again.test.content_hash == fashion.test.content_hash
    assert np.array_equal(again.train.images, fashion.train.images)


@needs_fashion_mnist
def test_fashion_mnist_bad_cache_is_ignored(tmp_path):
    (tmp_path / fm.CACHE_NAME).write_bytes(b"not an npz")
    bundle = load_fashion_mnist([fm.SYSTEM_DIR], cache_dir=tmp_path)
    assert bundle.train.content_hash == fm.TRAIN_CONTENT_HASH
    assert load_fashion_mnist([], cache_dir=tmp_path).train.source == str(tmp_path / fm.CACHE_NAME)


def test_fashion_mnist_stats_match_hard_coded(fashion):
    assert channel_stats(fashion.train.images, channels=1) == (fm.MEAN, fm.STD)
    p = Preprocess.for_dataset(fashion, 32, 3)
    assert p.mean == fm.MEAN * 3 and p.std == fm.STD * 3 and p.channels == 3 and p.image_size == 32


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_fashion_mnist_missing(tmp_path):
    url = closed_port_url()
    with pytest.raises(EdgecnnError) as e:
        load_fashion_mnist([tmp_path], cache_dir=tmp_path, base_url=url)
    msg = str(e.value)
    assert msg.startswith(
        "Fashion-MNIST not found: install it with `sudo apt-get install dataset-fashion-mnist`"
    )
    assert f"put the four .gz files from {url} in {tmp_path}" in msg
    assert "\n" not in msg and "refused" in msg.lower()
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind
    with pytest.raises(EdgecnnError, match="downloading is off"):
        load_fashion_mnist([tmp_path], cache_dir=tmp_path, download=False)


# The MD5s published in Fashion-MNIST's README for the files at fm.BASE_URL.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def official_gz(name: str) -> bytes:
    """The official .gz rebuilt from Debian's copy: same deflate data, the original gzip header."""
    debian = (fm.SYSTEM_DIR / name).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # deflate, no flags: Debian dropped the file name
    mtime = 1504176606 if name.startswith("train") else 1504176627  # 2017-08-31 10:50:06 / 10:50:27 UTC
    header = b"\x1f\x8b\x08\x08" + mtime.to_bytes(4, "little") + b"\x00\x03" + name[:-3].encode() + b"\x00"
    return header + debian[10:]


@needs_fashion_mnist
def test_fashion_mnist_download(tmp_path, http_server):
    for name in fm.FILES:
        body = official_gz(name)
        assert hashlib.md5(body).hexdigest() == OFFICIAL_MD5[name]  # so the hard-coded sha256 are right
        assert hashlib.sha256(body).hexdigest() == fm.FILES[name][0]
        http_server.add(name, body)
    bundle = load_fashion_mnist([tmp_path], cache_dir=tmp_path, base_url=http_server.url(""))
    assert bundle.train.content_hash == fm.TRAIN_CONTENT_HASH
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*fm.FILES, fm.CACHE_NAME])


def test_fashion_mnist_download_checksum_mismatch(tmp_path, http_server):
    for name in fm.FILES:
        http_server.add(name, b"not the data")
    with pytest.raises(EdgecnnError, match="Fashion-MNIST not found: .*checksum mismatch"):
        load_fashion_mnist([tmp_path], cache_dir=tmp_path, base_url=http_server.url(""))
    assert list(tmp_path.iterdir()) == []


def _idx(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + data


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not gzip", "not a whole gzip file"),
        (gzip.compress(_idx(0x803, (2, 28, 28), bytes(2 * 784)))[:-10], "not a whole gzip file"),
        (gzip.compress(_idx(0x801, (2, 28, 28), bytes(2 * 784))), "bad magic number"),
        (gzip.compress(_idx(0x803, (2, 28, 28), bytes(784))), "truncated or padded"),
        (gzip.compress(_idx(0x803, (2, 28, 28), bytes(2 * 784))), "not the official Fashion-MNIST file"),
    ],
)
def test_fashion_mnist_corrupt_file(tmp_path, content, message):
    for name in fm.FILES:  # train-images is read first; the others are never reached
        (tmp_path / name).write_bytes(b"")
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(content)
    with pytest.raises(EdgecnnError, match=message) as e:
        load_fashion_mnist([tmp_path], cache_dir=tmp_path, download=False)
    assert str(bad) in str(e.value) and "remove it" in str(e.value)


def test_unknown_dataset_name():
    with pytest.raises(EdgecnnError, match="unknown dataset 'fashion_mnist': pass fashion-mnist or a path"):
        load_dataset("fashion_mnist")


# -- ImageFolder --------------------------------------------------------------------------


def write_images(root, classes=("cat", "dog", "emu"), n=5, size=(12, 10), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_imagefolder_split_by_fraction(tmp_path):
    write_images(tmp_path)
    Image.new("L", (12, 10), 7).save(tmp_path / "dog" / "grey.PNG")  # any case; grey among RGB -> RGB
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    bundle = load_dataset(str(tmp_path))
    assert bundle.classes == ("cat", "dog", "emu")
    assert bundle.train.images.shape == (13, 10, 12, 3)  # own size kept: H x W = 10 x 12
    assert np.bincount(bundle.test.labels).tolist() == [1, 1, 1]  # 20% of each class
    assert np.bincount(bundle.train.labels).tolist() == [4, 5, 4]
    again = load_imagefolder(tmp_path)
    assert again.train.content_hash == bundle.train.content_hash
    assert again.test.content_hash == bundle.test.content_hash
    assert load_imagefolder(tmp_path, seed=1).test.content_hash != bundle.test.content_hash


def test_imagefolder_grey_and_mixed_sizes(tmp_path):
    write_images(tmp_path, classes=("a", "b"), n=3, mode="L")
    Image.new("L", (40, 20), 9).save(tmp_path / "a" / "big.png")
    bundle = load_imagefolder(tmp_path, store_size=16)
    assert bundle.train.images.shape[1:] == (16, 16, 1)  # sizes differ: stretched to store_size, grey kept


def test_imagefolder_train_test_folders(tmp_path):
    write_images(tmp_path / "train", n=4)
    write_images(tmp_path / "val", n=2, seed=1)
    bundle = load_imagefolder(tmp_path)
    assert len(bundle.train) == 12 and len(bundle.test) == 6
    assert bundle.test.source == str(tmp_path / "val")
    write_images(tmp_path / "test", classes=("cat", "dog", "fox"), n=1)
    with pytest.raises(EdgecnnError, match="only in train: emu; only in test: fox"):
        load_imagefolder(tmp_path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "dataset path does not exist"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is not a directory"),
        (lambda p: p, "has no class subfolders"),
        (lambda p: write_images(p, classes=("only",)) or p, r"has one class folder \(only\)"),
        (lambda p: write_images(p) or (p / "gnu").mkdir() or p, "class folder .*gnu has no images"),
        (
            lambda p: write_images(p) or (p / "dog" / "bad.jpg").write_bytes(b"garbage") and p,
            "cannot read image .*bad.jpg .*remove the file",
        ),
    ],
)
def test_imagefolder_errors(tmp_path, make, message):
    root = make(tmp_path)
    with pytest.raises(EdgecnnError, match=message) as e:
        load_dataset(str(root))
    assert "\n" not in str(e.value)


# -- Preprocess ---------------------------------------------------------------------------


@pytest.mark.parametrize("src", [(28, 28), (9, 7), (40, 30), (300, 200)])
@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocess_numpy_matches_torch(src, c_in, channels, layout):
    rng = np.random.default_rng(sum(src) + c_in)
    images = rng.integers(0, 256, (2, *src, c_in), dtype=np.uint8)
    mean, std = ((0.3,), (0.35,)) if channels == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for size in (8, 32, 57, 224):
        p = Preprocess(size, channels, mean, std, layout=layout)
        a, b = p.apply_numpy(images), p.apply_torch(images).numpy()
        expected = (2, channels, size, size) if layout == "NCHW" else (2, size, size, channels)
        assert a.shape == b.shape == expected and a.dtype == b.dtype == np.float32
        assert np.abs(a - b).max() < 1e-5


def test_preprocess_values():
    x = np.full((1, 4, 4, 1), 255, dtype=np.uint8)
    out = Preprocess(8, 3, (0.5, 0.5, 0.0), (0.5, 0.25, 1.0)).apply_torch(x)
    assert out.shape == (1, 3, 8, 8)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0]))


def test_preprocess_dict_roundtrip_and_validation():
    p = Preprocess(32, 3, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), layout="NHWC")
    assert Preprocess.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(EdgecnnError, match="unknown key 'imagesize'"):
        Preprocess.from_dict({**p.to_dict(), "imagesize": 32})
    for bad, message in [
        ({"image_size": 4}, "image_size"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"mean": [0.1]}, "one value per channel"),
        ({"std": [0.1, 0.0, 0.1]}, "positive"),
        ({"layout": "CHW"}, "layout must be one of NCHW, NHWC"),
    ]:
        with pytest.raises(EdgecnnError, match=message):
            Preprocess.from_dict({**p.to_dict(), **bad})
    with pytest.raises(EdgecnnError, match="uint8 images shaped N x H x W x C"):
        p.apply_numpy(np.zeros((2, 8, 8), dtype=np.uint8))


def test_preprocess_needs_no_torch():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from edgecnn.data import Preprocess
        p = Preprocess(16, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        print(p.apply_numpy(np.zeros((1, 8, 8, 1), dtype=np.uint8)).shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 3, 16, 16)"


# -- splits -------------------------------------------------------------------------------


def small_bundle(n_train=100, n_test=20) -> DatasetBundle:
    rng = np.random.default_rng(0)

    def ds(n):
        return ImageDataset(
            "tiny",
            rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
            rng.integers(0, 2, n),
            ("a", "b"),
            "memory",
        )

    return DatasetBundle("tiny", ds(n_train), ds(n_test))


def test_splits_fashion_mnist(fashion):
    splits = make_splits(fashion, SplitSpec())
    sizes = {name: len(s) for name, s in splits.items()}
    assert sizes == {"train": 54000, "val": 5000, "calib": 1000, "test": 10000}
    train, val, calib = (set(splits[k].indices.tolist()) for k in ("train", "val", "calib"))
    assert not (train & val) and not (train & calib) and not (val & calib)
    assert len(train | val | calib) == 60000
    assert splits["test"].pool == "test" and splits["calib"].pool == "train"


def test_splits_deterministic_and_ids():
    bundle = small_bundle()
    spec = SplitSpec(val=10, calib=5, seed=0)
    a, b = make_splits(bundle, spec), make_splits(bundle, spec)
    assert {k: s.split_id for k, s in a.items()} == {k: s.split_id for k, s in b.items()}
    assert all(np.array_equal(a[k].indices, b[k].indices) for k in a)
    c = make_splits(bundle, SplitSpec(val=10, calib=5, seed=1))
    for k in ("train", "val", "calib"):
        assert c[k].split_id != a[k].split_id
    assert c["test"].split_id == a["test"].split_id  # same images whatever the seed
    assert len({s.split_id for s in a.values()}) == 4
    with pytest.raises(EdgecnnError, match="leave none to train on"):
        make_splits(bundle, SplitSpec(val=90, calib=10))
    images, labels = take(bundle, a["calib"])
    assert np.array_equal(images, bundle.train.images[a["calib"].indices]) and len(labels) == 5
    with pytest.raises(EdgecnnError, match="was not made from dataset"):
        take(small_bundle(n_train=50), a["calib"])


def test_subset_and_calibration_set():
    splits = make_splits(small_bundle(), SplitSpec(val=10, calib=20))
    train = splits["train"]
    s = subset(train, 30, seed=0)
    assert len(s) == 30 and set(s.indices) <= set(train.indices)
    assert subset(train, 30, seed=0).split_id == s.split_id != subset(train, 30, seed=1).split_id
    assert subset(train, len(train)) is train
    calib = splits["calib"]
    small, large = calibration_set(calib, 5), calibration_set(calib, 10)
    assert np.array_equal(large.indices[:5], small.indices) and small.split_id != large.split_id
    with pytest.raises(EdgecnnError, match="holds 20; ask for 1 to 20 or raise data.calib"):
        calibration_set(calib, 21)
    with pytest.raises(EdgecnnError, match="holds 70"):
        subset(train, 71)


# -- batches ------------------------------------------------------------------------------


def batches(images, labels, p, **kw):
    return [(x.clone(), y.clone()) for x, y in iterate_batches(images, labels, p, 16, **kw)]


def test_iterate_batches_shapes_and_order():
    b = small_bundle()
    p = Preprocess(16, 3, (0.5,) * 3, (0.25,) * 3)
    plain = batches(b.train.images, b.train.labels, p, shuffle=False)
    assert len(plain) == num_batches(100, 16) == 7
    assert plain[0][0].shape == (16, 3, 16, 16) and plain[0][0].dtype == torch.float32
    assert plain[-1][0].shape[0] == 4 and plain[0][1].dtype == torch.int64
    assert torch.equal(torch.cat([y for _, y in plain]), torch.tensor(b.train.labels))
    assert torch.equal(plain[0][0], p.apply_torch(b.train.images[:16]))
    assert len(batches(b.train.images, b.train.labels, p, shuffle=False, drop_last=True)) == 6
    assert num_batches(100, 16, drop_last=True) == 6


def test_iterate_batches_shuffle_deterministic():
    b = small_bundle()
    p = Preprocess(8, 1, (0.5,), (0.25,))

    def run(**kw):
        return torch.cat([y for _, y in batches(b.train.images, b.train.labels, p, shuffle=True, **kw)])

    assert torch.equal(run(seed=3, epoch=1), run(seed=3, epoch=1))
    assert not torch.equal(run(seed=3, epoch=1), run(seed=3, epoch=2))
    assert sorted(run(seed=3).tolist()) == sorted(b.train.labels.tolist())


@pytest.mark.parametrize("augment", ["flip", "flip+crop"])
def test_augmentation_deterministic(augment):
    b = small_bundle()
    p = Preprocess(32, 3, (0.5,) * 3, (0.25,) * 3)
    kw = {"shuffle": True, "seed": 5, "epoch": 2, "augment": augment}
    first = batches(b.train.images, b.train.labels, p, **kw)
    second = batches(b.train.images, b.train.labels, p, **kw)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, second, strict=True))
    plain = batches(b.train.images, b.train.labels, p, shuffle=True, seed=5, epoch=2)
    assert any(not torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, plain, strict=True))
    other_epoch = batches(b.train.images, b.train.labels, p, **{**kw, "epoch": 3})
    assert any(not torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, other_epoch, strict=True))
    resumed = batches(b.train.images, b.train.labels, p, start=3, **kw)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first[3:], resumed, strict=True))
    nhwc = batches(b.train.images, b.train.labels, dataclasses.replace(p, layout="NHWC"), **kw)
    assert torch.equal(nhwc[0][0], first[0][0].permute(0, 2, 3, 1))
    with pytest.raises(EdgecnnError, match="unknown augmentation"):
        next(iterate_batches(b.train.images, b.train.labels, p, 16, shuffle=True, augment="mixup"))


def test_crop_pads_black():
    x = np.full((64, 32, 32, 1), 255, dtype=np.uint8)
    p = Preprocess(32, 1, (0.5,), (0.25,))
    out = torch.cat(
        [x for x, _ in iterate_batches(x, np.zeros(64), p, 64, shuffle=False, seed=0, augment="flip+crop")]
    )
    assert set(out.unique().tolist()) == {-2.0, 2.0}  # black padding (0 - 0.5) / 0.25 and the white image
