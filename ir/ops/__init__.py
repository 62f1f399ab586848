"""Importing this package registers every op family."""
from cococ.ir.ops import activation, nn, norm, pool, tensor  # noqa: F401
