"""Tests that need no process: pure decisions, and the rules of the code's structure."""
