"""Images from the network, checked before they are decoded, and InternVL's dynamic tiling: the image
is resized to the grid of S x S tiles whose aspect ratio is closest to its own (at most `max_tiles`),
cut into those tiles, and a thumbnail of the whole image is added when there is more than one."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from aiohttp import web

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageError(ValueError):
    """A malformed or refused image: the client's fault (HTTP 400, or 413 when too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def http(self) -> web.HTTPException:
        if self.status == 413:
            return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=str(self))
        return web.HTTPBadRequest(text=str(self))


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20
    max_pixels: int = 64 * 2**20  # width x height, checked from the header before decoding


def check_header(data: bytes, limits: Limits) -> object:
    """The image, opened but not decoded: its format and size come from the header, so a
    decompression bomb is refused before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise ImageError(f"image of {len(data)} bytes exceeds {limits.max_bytes}", 413)
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # PIL's own, coarser limit on the header's size
        raise ImageError(f"image exceeds {limits.max_pixels} pixels", 413) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageError(f"not a decodable image: {error}") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(f"image of {width}x{height} pixels exceeds {limits.max_pixels}", 413)
    return image


def open_checked(data: bytes, limits: Limits) -> object:
    """The decoded RGB image, once its header passed `check_header`."""
    from PIL import Image

    image = check_header(data, limits)
    assert isinstance(image, Image.Image)
    try:
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"image could not be decoded: {error}") from None


def grid(width: int, height: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """(columns, rows) of tiles, as InternVL's find_closest_aspect_ratio picks them: the closest aspect
    ratio; on a tie, the larger grid when the image has the pixels to fill it."""
    ratios = sorted(
        {
            (i, j)
            for n in range(1, max_tiles + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= max_tiles
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for columns, rows in ratios:
        diff = abs(aspect - columns / rows)
        if diff < best_diff:
            best, best_diff = (columns, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * columns * rows:
            best = (columns, rows)
    return best


def tiles(image: object, tile: int, max_tiles: int) -> torch.Tensor:
    """(T, 3, S, S) float tiles in [0, 1]: the grid's tiles row by row, then the thumbnail."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    columns, rows = grid(image.width, image.height, tile, max_tiles)
    resized = image.resize((tile * columns, tile * rows), Image.Resampling.BICUBIC)
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(tile * rows, tile * columns, 3).permute(2, 0, 1).float() / 255.0
    out = pixels.unfold(1, tile, tile).unfold(2, tile, tile)  # (3, rows, columns, S, S)
    out = out.permute(1, 2, 0, 3, 4).reshape(rows * columns, 3, tile, tile)
    if rows * columns > 1:
        thumb = image.resize((tile, tile), Image.Resampling.BICUBIC)
        thumb_pixels = torch.frombuffer(bytearray(thumb.tobytes()), dtype=torch.uint8)
        out = torch.cat([out, (thumb_pixels.view(tile, tile, 3).permute(2, 0, 1).float() / 255.0)[None]])
    return out


def normalise(tiles: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (tiles - mean) / std
