"""Model building and export tools (run with the dev dependencies from requirements-dev.txt)."""
