"""DermAI: a leakage-safe, reproducible skin-condition classifier pipeline.

Educational/research prototype. NOT a medical diagnostic tool.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "DermAI is an educational/research prototype and NOT a medical diagnostic tool. "
    "Its outputs must not be used for diagnosis or treatment decisions; see a clinician."
)
