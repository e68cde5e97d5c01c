"""Test-wide settings: notebooks under nbval run with the small `ci` preset unless told otherwise."""

import os

# Set before nbval starts any kernel, so that every notebook kernel inherits it.
os.environ.setdefault("MINILM_PRESET", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
