"""Importing this package registers every op family (in this order, the order all_ops() keeps)."""
from cococ.ir.ops import activation, softmax, nn, norm, pool, tensor, view  # noqa: F401
# --- Scalpel node pruning (issue 6): the mask op, ir/ops/mask.py ---
from cococ.ir.ops import mask  # noqa: F401,E402
