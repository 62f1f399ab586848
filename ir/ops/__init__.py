"""Importing this package registers every op family: each module in it, in name order (the order
all_ops() keeps), so a new family file needs no edit here."""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
