"""Importing this package registers every op family."""
from cococ.ir.ops import activation, nn, norm, pool, tensor  # noqa: F401
# --- Scalpel node pruning (issue 6): the mask op, ir/ops/mask.py ---
from cococ.ir.ops import mask  # noqa: F401,E402
