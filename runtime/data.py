"""Data sets for training and evaluation: `digits` built in, `.npz` files, image folders.

Every source becomes a `Dataset` of float32 NCHW arrays shaped for the network's input, so the
trainer never looks at files. `digits` is scikit-learn's 8×8 handwritten digits (1,797
images, shipped inside the wheel: no download), which makes training reproducible anywhere
in seconds; it is resized bilinearly to the network's H×W (8×8 -> 28×28 for LeNet, framed
as MNIST), pixel values in [0, 1], with a fixed stratified 80/20 split. Image folders follow Caffe's ImageData
and `transform_param` (scale, mean_value, crop_size, mirror; BGR channel order as Caffe's
OpenCV reader). Anything wrong in the data is a CococError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cococ.ir.core import CococError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


@dataclass
class Dataset:
    """Train and test arrays (x: float32 [N, C, H, W], y: int64 [N]) and how to batch them.

    With `crop`, stored images are larger than the net's input: training batches take a random
    crop (and a random mirror with `mirror`), test batches the centre crop, as Caffe.
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    crop: int | None = None
    mirror: bool = False
    class_names: list[str] | None = None

    def train_batch(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = self.x_train[idx]
        if self.crop:
            h, w = x.shape[2:]
            i, j = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
            x = x[:, :, i:i + self.crop, j:j + self.crop]
        if self.mirror:
            flip = rng.random(len(x)) < 0.5
            x = np.where(flip[:, None, None, None], x[..., ::-1], x)
        return np.ascontiguousarray(x), self.y_train[idx]

    def test_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        x = self.x_test
        if self.crop:
            h, w = x.shape[2:]
            i, j = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[:, :, i:i + self.crop, j:j + self.crop]
        return np.ascontiguousarray(x), self.y_test

    def describe(self) -> str:
        return (f"{self.name}: {len(self.y_train)} train, {len(self.y_test)} test, "
                f"{self.num_classes} classes, x {list(self.test_arrays()[0].shape[1:])}")


def load_data(spec: str | Path, input_shape, *, num_classes: int | None = None,
              transform: dict[str, Any] | None = None) -> Dataset:
    """The data set `spec` ("digits", a .npz file or an image folder) for a net whose input
    is `input_shape` (N, C, H, W); `num_classes` (the net's outputs) bounds the labels."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise CococError(f"data: the network input must be NCHW images, got shape {list(shape)}")
    spec_s = str(spec)
    if spec_s == "digits":
        ds = digits(shape[1:])
    else:
        path = Path(spec_s)
        if not path.exists():
            raise CococError(f"{path}: no such data set (use 'digits', a .npz file or an image folder)")
        if path.is_dir():
            ds = image_folder(path, shape[1:], transform or {})
        elif path.suffix == ".npz":
            ds = npz(path, shape[1:])
        else:
            raise CococError(f"{path}: unknown data format (expected 'digits', a .npz file or an image folder)")
    if num_classes is not None:
        if ds.num_classes > num_classes:
            raise CococError(f"{spec_s}: labels go up to {ds.num_classes - 1}, but the network has only "
                             f"{num_classes} outputs")
        ds.num_classes = num_classes
    return ds


# ---- digits ------------------------------------------------------------------------------------

def resize(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float [N, C, h, w] to [N, C, H, W] (torch's, align_corners=False)."""
    if tuple(x.shape[2:]) == tuple(hw):
        return x.astype(np.float32)
    import torch  # local: torch takes seconds to load; `cococ build --quant-data` reads data without it
    import torch.nn.functional as F
    with torch.no_grad():
        return F.interpolate(torch.from_numpy(x.astype(np.float32)), size=tuple(hw), mode="bilinear",
                             align_corners=False).numpy()


def digits(chw) -> Dataset:
    """scikit-learn's digits at C×H×W: 1,437 train / 360 test, stratified split with seed 0.

    Inputs of 28×28 or more get the digits framed as MNIST frames its own: the digit scaled to
    20/28 of the field and centred in a zero border (for LeNet-5 this is worth a point of test
    accuracy over filling the whole field: its 5×5 filters were designed for that framing).
    Smaller inputs are filled edge to edge.
    """
    from sklearn.datasets import load_digits  # local: ~0.3 s to load, only this data set needs it
    from sklearn.model_selection import train_test_split
    c, h, w = chw
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    if min(h, w) >= 28:
        bh, bw = round(h * 20 / 28), round(w * 20 / 28)
        t, l = (h - bh) // 2, (w - bw) // 2
        x = np.pad(resize(x, (bh, bw)), ((0, 0), (0, 0), (t, h - bh - t), (l, w - bw - l)))
    else:
        x = resize(x, (h, w))
    x = np.repeat(x, c, axis=1)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return Dataset("digits", np.ascontiguousarray(xtr), ytr, np.ascontiguousarray(xte), yte, 10)


# ---- .npz --------------------------------------------------------------------------------------

def npz(path: Path, chw) -> Dataset:
    """x_train, y_train, x_test, y_test; x is [N, C, H, W] (or [N, H, W] for one channel)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip, pickle, truncation: all the user's file
        raise CococError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise CococError(f"{path}: missing array(s) {', '.join(missing)} (has: {', '.join(arrays) or 'none'})")
    out = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim == 3 and chw[0] == 1:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(chw):
            raise CococError(f"{path}: x_{part} has shape {list(x.shape)}, the network needs [N, {', '.join(map(str, chw))}]")
        if not np.issubdtype(x.dtype, np.number):
            raise CococError(f"{path}: x_{part} has dtype {x.dtype}, expected numbers")
        if y.ndim != 1 or len(y) != len(x):
            raise CococError(f"{path}: y_{part} has shape {list(y.shape)}, expected [{len(x)}] (one label per x)")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
                raise CococError(f"{path}: y_{part} must hold integer class labels, got dtype {y.dtype}")
        if len(y) == 0:
            raise CococError(f"{path}: x_{part} is empty")
        if y.min() < 0:
            raise CococError(f"{path}: y_{part} has a negative label {int(y.min())}")
        if not np.all(np.isfinite(x)):
            raise CococError(f"{path}: x_{part} has NaN or infinite values")
        out[part] = (np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64))
    classes = int(max(out["train"][1].max(), out["test"][1].max())) + 1
    return Dataset(path.name, *out["train"], *out["test"], classes)


# ---- image folders -----------------------------------------------------------------------------

def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise CococError(f"{root}: no class sub-folders (expected one folder of images per class)")
    return dirs


def _images(d: Path) -> list[Path]:
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CococError(f"{d}: no images in this class folder")
    return files


def image_folder(root: Path, chw, transform: dict[str, Any]) -> Dataset:
    """`root/<class>/*.png` (a fixed 80/20 split per class) or `root/train/<class>`, `root/test/<class>`.

    Images are resized to the net's H×W, or, with crop_size, to `new_height`×`new_width`
    (default: the net's size) and cropped per batch. Then (pixel - mean_value) * scale, as
    Caffe's DataTransformer; 3-channel nets read BGR, 1-channel grey.
    """
    c, h, w = chw
    crop = int(transform.get("crop_size") or 0) or None
    if crop is not None and crop != h:
        raise CococError(f"{root}: crop_size {crop} must equal the network input size {h}x{w}")
    size = (int(transform.get("new_height") or h), int(transform.get("new_width") or w))
    if crop is not None and min(size) < crop:
        raise CococError(f"{root}: images resized to {size[0]}x{size[1]} are smaller than crop_size {crop}")
    mean = np.asarray(transform.get("mean_value") or [0.0], dtype=np.float32)
    if mean.size not in (1, c):
        raise CococError(f"{root}: mean_value has {mean.size} values for a {c}-channel network")
    scale = float(transform.get("scale", 1.0))

    split = (root / "train").is_dir() and (root / "test").is_dir()
    classes = [p.name for p in _class_dirs(root / "train" if split else root)]
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(classes):
        if split:
            test_dir = root / "test" / name
            if not test_dir.is_dir():
                raise CococError(f"{test_dir}: missing (train has class '{name}')")
            lists = {"train": _images(root / "train" / name), "test": _images(test_dir)}
        else:
            files = _images(root / name)
            k = max(1, len(files) // 5) if len(files) > 1 else 0
            lists = {"train": files[k:], "test": files[:k]}
        for part, files in lists.items():
            for f in files:
                parts[part][0].append(_read_image(f, c, size))
                parts[part][1].append(label)
    if split:
        extra = sorted({p.name for p in _class_dirs(root / "test")} - set(classes))
        if extra:
            raise CococError(f"{root / 'test' / extra[0]}: class not in {root / 'train'}")
    arrays = []
    for part in ("train", "test"):
        xs, ys = parts[part]
        if not xs:
            raise CococError(f"{root}: no {part} images")
        x = (np.stack(xs) - mean.reshape(1, -1, 1, 1)) * np.float32(scale)
        arrays += [x.astype(np.float32), np.asarray(ys, np.int64)]
    return Dataset(root.name, *arrays, len(classes), crop=crop, mirror=bool(transform.get("mirror")),
                   class_names=classes)


def _read_image(path: Path, c: int, size: tuple[int, int]) -> np.ndarray:
    # local: only image folders need PIL, and every CLI command (--help too) loads this module
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CococError(f"{path}: cannot read image ({e})") from None
    if c == 1:
        return a[None]
    if c != 3:
        raise CococError(f"{path}: images give 1 or 3 channels, the network wants {c}")
    return a[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW (Caffe's layout)
