"""Leaf package: time and duration parsing shared by every part (imports nothing of ours)."""
