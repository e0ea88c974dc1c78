"""Helpers of the tests, by kind (see ``tests/conftest.py``)."""
