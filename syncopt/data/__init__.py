"""Data: real media decoding, synthetic talking heads, datasets."""
