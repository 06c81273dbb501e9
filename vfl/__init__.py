"""Vertical federated learning: alignment (vfl.align), CKKS interactive layer (vfl.he), split training."""
