"""Small pieces of text for people, shared by every renderer."""

from __future__ import annotations


def clip(text: str, width: int) -> str:
    """Return ``text`` cut to ``width`` characters, "..." marking the cut."""
    return text if len(text) <= width else text[: width - 3] + "..."
