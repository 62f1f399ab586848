"""Data sets: digits at the network's shape, .npz files and image folders, and their errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cococ.ir.core import CococError
from cococ.runtime.data import load_data


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (1, 3, 16, 16), (1, 1, 8, 8)])
def test_digits_shapes_and_fixed_split(shape):
    ds = load_data("digits", shape)
    assert ds.x_train.shape == (1437,) + shape[1:] and ds.x_test.shape == (360,) + shape[1:]
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.num_classes == 10
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 + 1e-6
    assert sorted(set(ds.y_test.tolist())) == list(range(10))
    if shape[2] >= 28:  # framed as MNIST: a 20x20 digit centred in 28x28
        assert ds.x_train[:, :, :4].max() == 0 and ds.x_train[:, :, 4:24, 4:24].max() > 0.5
    again = load_data("digits", shape)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_digits_errors():
    with pytest.raises(CococError, match="NCHW"):
        load_data("digits", (1, 64))
    with pytest.raises(CococError, match="only 5 outputs"):
        load_data("digits", (1, 1, 8, 8), num_classes=5)


def _npz(tmp_path, name="d.npz", **over):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.random((6, 1, 4, 4), np.float32), y_train=np.array([0, 1, 2, 0, 1, 2]),
                  x_test=rng.random((3, 1, 4, 4), np.float32), y_test=np.array([0, 1, 2]))
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def test_npz_ok(tmp_path):
    ds = load_data(_npz(tmp_path), (1, 1, 4, 4))
    assert ds.x_train.shape == (6, 1, 4, 4) and ds.num_classes == 3
    ds = load_data(_npz(tmp_path, x_train=np.zeros((6, 4, 4)), x_test=np.zeros((3, 4, 4))), (1, 1, 4, 4), num_classes=10)
    assert ds.x_train.shape == (6, 1, 4, 4) and ds.num_classes == 10


@pytest.mark.parametrize("over,msg", [
    (dict(y_test=None), "missing array.*y_test"),
    (dict(x_train=np.zeros((6, 1, 5, 4), np.float32)), r"x_train has shape \[6, 1, 5, 4\].*\[N, 1, 4, 4\]"),
    (dict(y_train=np.array([0, 1])), "y_train has shape"),
    (dict(y_train=np.array([0, 1, -1, 0, 1, 2])), "negative label"),
    (dict(y_test=np.array([0.5, 1, 2])), "integer class labels"),
    (dict(x_test=np.full((3, 1, 4, 4), np.nan, np.float32)), "NaN"),
    (dict(y_train=np.array([0, 1, 2, 0, 1, 12])), "labels go up to 12"),
])
def test_npz_errors_name_the_file(tmp_path, over, msg):
    path = _npz(tmp_path, **over)
    with pytest.raises(CococError, match=msg) as e:
        load_data(path, (1, 1, 4, 4), num_classes=10)
    assert str(path) in str(e.value)


def test_unreadable_and_unknown_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CococError, match="bad.npz: cannot read"):
        load_data(bad, (1, 1, 4, 4))
    with pytest.raises(CococError, match="no such data set"):
        load_data(tmp_path / "missing.npz", (1, 1, 4, 4))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(CococError, match="unknown data format"):
        load_data(tmp_path / "x.csv", (1, 1, 4, 4))


def _folder(root, classes=("cat", "dog"), n=5, size=(10, 12)):
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = np.full(size + (3,), 40 * ci + i, np.uint8)
            a[..., 0] = 200  # red channel: BGR order puts it last
            Image.fromarray(a).save(root / c / f"{i}.png")
    return root


def test_image_folder_split_and_transform(tmp_path):
    root = _folder(tmp_path / "imgs")
    ds = load_data(root, (1, 3, 8, 8), transform={"scale": 0.5, "mean_value": [10, 20, 30]})
    assert ds.class_names == ["cat", "dog"] and len(ds.y_train) == 8 and len(ds.y_test) == 2
    assert ds.x_train.shape == (8, 3, 8, 8)
    np.testing.assert_allclose(ds.x_train[0, 2], (200 - 30) * 0.5)  # R is channel 2 (BGR), minus its mean
    grey = load_data(root, (1, 1, 8, 8))
    assert grey.x_test.shape == (2, 1, 8, 8)


def test_image_folder_train_test_dirs_crop_mirror(tmp_path):
    _folder(tmp_path / "d" / "train", n=3)
    _folder(tmp_path / "d" / "test", n=2)
    ds = load_data(tmp_path / "d", (1, 3, 6, 6), transform={"crop_size": 6, "new_height": 9, "new_width": 9,
                                                            "mirror": True})
    assert ds.x_train.shape == (6, 3, 9, 9) and ds.test_arrays()[0].shape == (4, 3, 6, 6)
    xb, yb = ds.train_batch(np.arange(4), np.random.default_rng(0))
    assert xb.shape == (4, 3, 6, 6) and list(yb) == list(ds.y_train[:4])


def test_image_folder_errors(tmp_path):
    with pytest.raises(CococError, match="no class sub-folders"):
        load_data(tmp_path, (1, 1, 8, 8))
    root = _folder(tmp_path / "a")
    (root / "empty").mkdir()
    with pytest.raises(CococError, match="empty: no images"):
        load_data(root, (1, 1, 8, 8))
    (root / "empty" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(CococError, match="broken.png: cannot read image"):
        load_data(root, (1, 1, 8, 8))
    with pytest.raises(CococError, match="mean_value has 2 values"):
        load_data(_folder(tmp_path / "b"), (1, 3, 8, 8), transform={"mean_value": [1, 2]})
    with pytest.raises(CococError, match="crop_size 5 must equal"):
        load_data(tmp_path / "b", (1, 3, 8, 8), transform={"crop_size": 5})
