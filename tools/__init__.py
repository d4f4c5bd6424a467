"""Scripts the Makefile runs: not part of the published package."""
