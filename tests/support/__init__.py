"""Test-support code shared by several test folders (never shipped in the package)."""
