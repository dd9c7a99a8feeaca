"""The two image layouts Keras knows, named once for every command."""

from __future__ import annotations

CHANNELS_FIRST = "channels_first"  # (N, C, H, W): what MXNet runs convolutions in
CHANNELS_LAST = "channels_last"  # (N, H, W, C): Keras's default
FORMATS: tuple[str, str] = (CHANNELS_FIRST, CHANNELS_LAST)


def other(data_format: str) -> str:
    """channels_last for channels_first and the other way round."""
    return CHANNELS_LAST if data_format == CHANNELS_FIRST else CHANNELS_FIRST
