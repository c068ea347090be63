"""yoyu: run local LLMs with room to spare."""

__version__ = "0.1.0"
