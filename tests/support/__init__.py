"""Helpers shared by the test modules (none of them is a test module, and none imports one)."""
