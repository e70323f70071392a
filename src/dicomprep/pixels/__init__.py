"""Pixel transforms: small pure functions over numpy arrays, one transform each
(intensity mapping, volume handling, crop, resize, pad)."""
