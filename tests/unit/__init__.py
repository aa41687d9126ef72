"""Tests of the core that need no server: they never skip."""
