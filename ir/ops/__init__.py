"""Importing this package registers every op family."""
from cococ.ir.ops import nn  # noqa: F401
