"""The torch runtime: IR graphs as torch modules (module.py), one lowering per op (lowering.py)."""
