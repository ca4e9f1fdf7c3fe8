"""Model compression: making a trained model smaller or faster (pruning: prune.py)."""
