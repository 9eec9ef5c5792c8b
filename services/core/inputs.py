"""The limits of what a prediction reads, shared by the API that checks its request and the work
process that decodes its inputs."""
from __future__ import annotations

MAX_INPUTS = 32
"""Inputs of one prediction."""
MAX_TEXT_CHARS = 10_000
"""Characters of one text, inline or read from a file."""
MAX_INLINE_IMAGE_CHARS = 512 * 1024
"""Base64 characters of one inline image."""
MAX_INLINE_CHARS = 768 * 1024
"""Base64 and text characters of a request's inline inputs together."""
MAX_FILE_BYTES = 32 * 1024 * 1024
"""Bytes of one input file."""
MAX_FILES_BYTES = 128 * 1024 * 1024
"""Bytes of a request's input files together."""
MAX_IMAGE_PIXELS = 40_000_000
"""Pixels of one input image (PIL refuses larger ones as decompression bombs)."""
MAX_TOP_K = 100
"""The most labels a classification's prediction lists with their scores."""
DEFAULT_TOP_K = 5
