"""Model backends: one module (or folder) per model kind, all implementing the contract in base.py."""
