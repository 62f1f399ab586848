"""Data sets for training and evaluation: `digits` built in, MNIST, Fashion-MNIST, IDX folders,
`.npz` files, image folders.

    from cococ.runtime.data import load_data
    ds = load_data("mnist", (1, 1, 28, 28))      # or "fashion-mnist", "idx:DIR", "digits", a.npz, a folder
    ds.x_train, ds.y_train                        # what training reads (55,000 for MNIST)
    ds.val_arrays()                               # what decisions read: the validation split
    ds.test_arrays()                              # only for the reported final accuracy
    ds.for_decisions()                            # a Dataset whose test split is the validation split

Every source becomes a `Dataset` of float32 NCHW arrays shaped for the network's input, so the
trainer never looks at files. The spec is parsed here only (`parse_spec`); every command's
`--data` comes through `load_data`.

- `mnist`, `fashion-mnist`, `idx:DIR` (runtime/datasets.py: where the files come from, their
  checks and the .npy cache): 28x28 grey images scaled by 1/256 (Caffe's lenet_train_test
  `scale: 0.00390625`, so [0, 1)); a larger input gets them centred in a zero border, a smaller
  one bilinearly resized, more channels repeat the grey one. The **validation split** is
  `VALIDATION` (5,000) images of the training file, or a tenth of it where that is less, drawn
  by a permutation with seed `SPLIT_SEED` (0) and left out of `x_train`: MNIST and
  Fashion-MNIST train on 55,000, validate on 5,000 and test on the 10,000 of the test file.
- `digits` is scikit-learn's 8×8 handwritten digits (1,797 images, shipped inside the wheel: no
  download), which makes training reproducible anywhere in seconds; it is resized bilinearly
  to the network's H×W (8×8 -> 28×28 for LeNet, framed as MNIST), pixel values in [0, 1], with
  a fixed stratified 80/20 split and **no validation split**: its 360 test images are all it
  can spare (carving 300 more out of 1,437 training images would move every digits result and
  the shipped digits weights), so `val_arrays()` gives the test split there, as before; use
  `mnist` where decisions must not see the test set.
- `.npz` files: x_train, y_train, x_test, y_test, and optionally x_val, y_val.
- Image folders follow Caffe's ImageData and `transform_param` (scale, mean_value, crop_size,
  mirror; BGR channel order as Caffe's OpenCV reader); no validation split.
Anything wrong in the data is a CococError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cococ.ir.core import CococError
from cococ.runtime.datasets import FASHION_CLASSES, load_fashion, load_idx_dir, load_mnist

VALIDATION = 5000   # images of the training file held out for decisions (mnist, fashion-mnist, idx:DIR)
SPLIT_SEED = 0      # the permutation that draws them
NAMED = ("digits", "mnist", "fashion-mnist")
DATA_HELP = "digits (built in), mnist, fashion-mnist, idx:DIR (IDX files), a .npz file or an image folder"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


@dataclass
class Dataset:
    """Train, test and validation arrays (x: float32 [N, C, H, W], y: int64 [N]) and how to batch them.

    `x_val`/`y_val`: the validation split (disjoint from train and test), None where the source
    has none (digits, image folders).
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
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def has_validation(self) -> bool:
        return self.y_val is not None

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
        """The test split (centre-cropped): for the reported final accuracy only."""
        return self._centre(self.x_test), self.y_test

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The split that accept/undo and search decisions read: validation, or test where the
        source has no validation split (digits, image folders: see the module docstring)."""
        if not self.has_validation:
            return self.test_arrays()
        return self._centre(self.x_val), self.y_val

    def for_decisions(self) -> Dataset:
        """This data set with the validation split in the test split's place, for code that
        takes decisions on `test_arrays()` (pruning loops, searches, their retraining); itself
        where there is no validation split."""
        if not self.has_validation:
            return self
        return replace(self, name=f"{self.name} (validation)", x_test=self.x_val, y_test=self.y_val)

    def _centre(self, x: np.ndarray) -> np.ndarray:
        if self.crop:
            h, w = x.shape[2:]
            i, j = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[:, :, i:i + self.crop, j:j + self.crop]
        return np.ascontiguousarray(x)

    def describe(self) -> str:
        val = f"{len(self.y_val)} validation, " if self.has_validation else ""
        return (f"{self.name}: {len(self.y_train)} train, {val}{len(self.y_test)} test, "
                f"{self.num_classes} classes, x {list(self.test_arrays()[0].shape[1:])}")


def parse_spec(spec: str | Path) -> tuple[str, str | None]:
    """`--data` as (kind, argument): ("digits"|"mnist"|"fashion-mnist", None), ("idx", DIR),
    ("npz", FILE) or ("folder", DIR). The one place a data spec is read."""
    s = str(spec)
    if s in NAMED:
        return s, None
    if s.startswith("idx:"):
        if not s[4:]:
            raise CococError("--data idx:DIR: the folder is missing after 'idx:'")
        return "idx", s[4:]
    path = Path(s)
    if not path.exists():
        raise CococError(f"{path}: no such data set (use {DATA_HELP})")
    if path.is_dir():
        return "folder", s
    if path.suffix == ".npz":
        return "npz", s
    raise CococError(f"{path}: unknown data format (expected {DATA_HELP})")


def load_data(spec: str | Path, input_shape, *, num_classes: int | None = None,
              transform: dict[str, Any] | None = None) -> Dataset:
    """The data set `spec` (see DATA_HELP and `parse_spec`) for a net whose input is
    `input_shape` (N, C, H, W); `num_classes` (the net's outputs) bounds the labels."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise CococError(f"data: the network input must be NCHW images, got shape {list(shape)}")
    spec_s = str(spec)
    kind, arg = parse_spec(spec)
    if kind == "digits":
        ds = digits(shape[1:])
    elif kind == "mnist":
        ds = grey_images("mnist", load_mnist(), shape[1:])
    elif kind == "fashion-mnist":
        ds = grey_images("fashion-mnist", load_fashion(), shape[1:], FASHION_CLASSES)
    elif kind == "idx":
        ds = grey_images(Path(arg).name or arg, load_idx_dir(Path(arg), num_classes), shape[1:])
    elif kind == "folder":
        ds = image_folder(Path(arg), shape[1:], transform or {})
    else:
        ds = npz(Path(arg), shape[1:])
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


# ---- MNIST-like grey images ----------------------------------------------------------------------

def validation_indices(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into a training file of `n_train` images: VALIDATION of them
    (or a tenth, where less) by a permutation with SPLIT_SEED, both sorted; disjoint by construction."""
    k = min(VALIDATION, n_train // 10)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n_train)
    return np.sort(perm[k:]), np.sort(perm[:k])


def grey_images(name: str, arrays: dict[str, np.ndarray], chw, class_names=None) -> Dataset:
    """uint8 images [N, h, w] and labels as a Dataset for a C×H×W net, with the validation split."""
    def fit(x: np.ndarray) -> np.ndarray:
        c, h, w = chw
        x = x[:, None].astype(np.float32) * np.float32(1 / 256)
        ih, iw = x.shape[2:]
        if h >= ih and w >= iw:
            t, l = (h - ih) // 2, (w - iw) // 2
            x = np.pad(x, ((0, 0), (0, 0), (t, h - ih - t), (l, w - iw - l)))
        else:
            x = resize(x, (h, w))
        return np.ascontiguousarray(np.repeat(x, c, axis=1) if c > 1 else x)

    tr, va = validation_indices(len(arrays["y_train"]))
    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    classes = int(max(y_train.max(), y_test.max())) + 1 if class_names is None else len(class_names)
    xs = fit(arrays["x_train"])
    return Dataset(name, xs[tr], y_train[tr], fit(arrays["x_test"]), y_test, classes, class_names=class_names,
                   x_val=xs[va] if len(va) else None, y_val=y_train[va] if len(va) else None)


# ---- .npz --------------------------------------------------------------------------------------

def npz(path: Path, chw) -> Dataset:
    """x_train, y_train, x_test, y_test (and optionally x_val, y_val: the validation split);
    x is [N, C, H, W] (or [N, H, W] for one channel)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip, pickle, truncation: all the user's file
        raise CococError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise CococError(f"{path}: missing array(s) {', '.join(missing)} (has: {', '.join(arrays) or 'none'})")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise CococError(f"{path}: x_val and y_val go together (has only {'x_val' if 'x_val' in arrays else 'y_val'})")
    out = {}
    for part in ("train", "test", "val")[:3 if "x_val" in arrays else 2]:
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
    classes = int(max(y.max() for _, y in out.values())) + 1
    x_val, y_val = out.get("val", (None, None))
    return Dataset(path.name, *out["train"], *out["test"], classes, x_val=x_val, y_val=y_val)


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
