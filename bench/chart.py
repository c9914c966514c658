"""A throughput-and-latency chart as PNG, with no plotting library (none is installed).

Two panels over time, one column per second: committed documents per second (blue)
and p99 latency in milliseconds (red), each scaled to its own maximum, which is written
in the panel's corner with a 3x5 pixel digit font.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

WIDTH, PANEL, MARGIN = 640, 150, 10
BLUE, RED, GREY, WHITE, BLACK = (52, 101, 164), (204, 0, 0), (200, 200, 200), (255, 255, 255), (0, 0, 0)
DIGITS = {  # 3x5 bitmaps, rows top to bottom
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
}


def _text(pixels: list[bytearray], x: int, y: int, text: str, scale: int = 2) -> None:
    for char in text:
        for row, bits in enumerate(DIGITS.get(char, ("000",) * 5)):
            for col, bit in enumerate(bits):
                if bit == "1":
                    for dy in range(scale):
                        for dx in range(scale):
                            _set(pixels, x + col * scale + dx, y + row * scale + dy, BLACK)
        x += 4 * scale


def _set(pixels: list[bytearray], x: int, y: int, colour: tuple[int, int, int]) -> None:
    if 0 <= y < len(pixels) and 0 <= x < WIDTH:
        pixels[y][3 * x : 3 * x + 3] = bytes(colour)


def _panel(pixels: list[bytearray], top: int, values: list[float], colour: tuple[int, int, int]) -> None:
    peak = max(values) if values and max(values) > 0 else 1.0
    bottom = top + PANEL
    for x in range(MARGIN, WIDTH - MARGIN):
        _set(pixels, x, bottom, GREY)
    if values:
        step = (WIDTH - 2 * MARGIN) / len(values)
        for i, value in enumerate(values):
            height = int((PANEL - 20) * value / peak)
            for x in range(int(MARGIN + i * step) + 1, int(MARGIN + (i + 1) * step)):
                for y in range(bottom - height, bottom):
                    _set(pixels, x, y, colour)
    _text(pixels, MARGIN + 2, top + 2, str(round(peak)))


def write_chart(path: Path, docs_per_s: list[float], p99_ms: list[float]) -> None:
    height = 2 * PANEL + 3 * MARGIN
    pixels = [bytearray(bytes(WHITE) * WIDTH) for _ in range(height)]
    _panel(pixels, MARGIN, docs_per_s, BLUE)
    _panel(pixels, 2 * MARGIN + PANEL, p99_ms, RED)
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", WIDTH, height, 8, 2, 0, 0, 0)
    png = b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(raw, 9)),
            chunk(b"IEND", b""),
        )
    )
    path.write_bytes(png)
