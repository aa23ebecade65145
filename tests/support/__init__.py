"""Helpers shared by test modules (imported as a library; conftest files only hold fixtures)."""
