"""Tests against the real local object-store servers (marker `stores`)."""
