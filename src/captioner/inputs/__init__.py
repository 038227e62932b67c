"""Inputs: safe image loading and preprocessing, and input sources (files, folders, bytes, PIL images)."""
