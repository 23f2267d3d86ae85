"""The `fastvit-analysis` command."""
