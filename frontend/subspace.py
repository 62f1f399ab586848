"""The promising subspace: one pruning rate per module for each network to explore.

Read from JSON (a list of rate lists), `.npy` (loaded with allow_pickle=False) or Wootz's
pickle format (Figure 3a) through a restricted unpickler that builds only lists, tuples,
numbers and numpy arrays: any other global in the file is refused before it is loaded, so
no code from a user's file ever runs. Or sampled (ORNL §5.2).
"""
from __future__ import annotations

import io
import json
import math
import pickle
import random
from pathlib import Path
from typing import Sequence

import numpy as np

from cococ.ir.core import CococError

Config = tuple[float, ...]

# the only globals a Wootz subspace pickle may name: what numpy needs to rebuild an array
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("copyreg", "_reconstructor"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise CococError(f"refusing to load '{module}.{name}' from a subspace pickle: only lists, tuples, "
                         "numbers and numpy arrays are accepted")


def _restricted_load(data: bytes):
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except CococError:
        raise
    except Exception as e:
        raise CococError(f"not a valid subspace pickle: {e}") from None


def _plain(obj):
    """Check the loaded object is made of lists/tuples/numbers/arrays only."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "iuf":
            raise CococError(f"subspace array has dtype {obj.dtype}; expected numbers")
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, (int, float, np.integer, np.floating)) and not isinstance(obj, bool):
        return float(obj)
    raise CococError(f"subspace contains a {type(obj).__name__}; expected lists of pruning rates")


def validate(configs, n_modules: int | None = None, source: str = "subspace") -> list[Config]:
    configs = _plain(configs)
    if not isinstance(configs, list) or not configs:
        raise CococError(f"{source}: expected a non-empty list of configurations")
    out = []
    for i, c in enumerate(configs):
        if not isinstance(c, list) or not c or any(isinstance(r, list) for r in c):
            raise CococError(f"{source}: configuration {i} must be a flat list of rates, got {c!r}"[:200])
        if any(not (0.0 <= r < 1.0) or math.isnan(r) for r in c):
            raise CococError(f"{source}: configuration {i} has a rate outside [0, 1): {c}")
        if n_modules is not None and len(c) != n_modules:
            raise CococError(f"{source}: configuration {i} has {len(c)} rates, the network has {n_modules} modules")
        out.append(tuple(c))
    if len({len(c) for c in out}) != 1:
        raise CococError(f"{source}: configurations have different lengths")
    return out


def load_subspace(path, n_modules: int | None = None) -> list[Config]:
    path = Path(path)
    if not path.exists():
        raise CococError(f"{path}: no such file")
    if path.is_dir():
        raise CococError(f"{path}: is a directory; expected a subspace file (.json, .npy or .pkl)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CococError(f"{path}: cannot read: {e.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise CococError(f"{path}: invalid JSON: {e}") from None
        if isinstance(obj, dict):
            obj = obj.get("configs", obj)
    elif suffix == ".npy":
        try:
            obj = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError) as e:  # EOFError: an empty file
            raise CococError(f"{path}: not a numeric .npy file ({e})") from None
    elif suffix in (".pkl", ".pickle", ".p", ""):
        obj = _restricted_load(data)
    else:
        raise CococError(f"{path}: unknown subspace format '{suffix}' (.json, .npy, .pkl)")
    return validate(obj, n_modules, str(path))


def sample_subspace(n: int, n_modules: int, rates: Sequence[float], seed: int = 0, lam: float = 1.5) -> list[Config]:
    """ORNL §5.2's close-to-uniform-size sampling.

    First the configurations with one rate everywhere; then random ones, where each value of
    the summed rate index (0 .. B·(|Δ|-1)) may take at most a λ/(B·(|Δ|-1)+1) share of the N
    samples, so that model sizes spread evenly instead of piling up in the middle.
    """
    if n < 1:
        raise CococError(f"asked for {n} configurations; sample at least 1")
    rates = sorted(set(float(r) for r in rates))    # a repeated rate would repeat configurations
    if not rates or any(not (0.0 <= r < 1.0) for r in rates):   # NaN fails the test too
        raise CococError(f"rates {','.join(f'{r:g}' for r in rates) or '(none)'}: "
                         "expected one or more pruning rates in [0, 1)")
    k = len(rates)
    total = k ** n_modules
    if n > total:
        raise CococError(f"asked for {n} configurations but {n_modules} modules × {k} rates give only {total}")
    rng = random.Random(seed)
    chosen: list[Config] = []
    seen: set[Config] = set()
    for r in rates[:n]:
        c = (r,) * n_modules
        chosen.append(c)
        seen.add(c)
    sums = n_modules * (k - 1) + 1
    cap = max(1, math.ceil(lam * n / sums))
    count = [0] * sums
    for c in chosen:
        count[sum(rates.index(r) for r in c)] += 1
    attempts = 0
    while len(chosen) < n:
        attempts += 1
        idx = [rng.randrange(k) for _ in range(n_modules)]
        c = tuple(rates[i] for i in idx)
        s = sum(idx)
        if c in seen or (count[s] >= cap and attempts < 200 * n):
            continue
        seen.add(c)
        count[s] += 1
        chosen.append(c)
    return chosen
