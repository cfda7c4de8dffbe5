"""Unique Account edge proxy: all decisions and state live in this package."""
