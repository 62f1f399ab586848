"""The `cococ` sub-commands, one module each (see cococ/cli.py for the contract a module meets).

This file makes the folder a regular package, so that setup.py's find_packages ships it in the wheel.
"""
