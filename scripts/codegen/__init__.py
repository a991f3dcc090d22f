"""The generator behind `scripts/generate.py`: spec -> models, resources (async and sync), table."""
