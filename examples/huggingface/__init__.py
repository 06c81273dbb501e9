"""Flower's HuggingFace quick start (IMDB sentiment, a small BERT), offline, under hfl."""
