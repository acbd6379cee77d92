"""Bounce processor tests."""
