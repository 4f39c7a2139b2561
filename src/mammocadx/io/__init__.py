"""Reading images from disk: :func:`read_image` is the one entry point."""
from mammocadx.io.images import ImageData, read_image

__all__ = ["ImageData", "read_image"]
