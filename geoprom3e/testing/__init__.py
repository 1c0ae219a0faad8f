"""Factories for tests and the offline demo: synthetic data, local STAC stacks, small encoders.

Each area keeps its factories in its own module here (``testing/synthetic.py``, ``testing/stac.py``, ...).
"""
