"""facegan.schema and facegan.images: resolution checks, image keys, grids."""
import subprocess
import sys

import numpy as np
import pytest

from facegan import cli, images, schema



@pytest.mark.parametrize("bad", [0, 4, 6, 100, 2048, "x", 64.5, None])
def test_check_resolution_rejects(bad):
    with pytest.raises(ValueError, match="resolution"):
        schema.check_resolution(bad)


@pytest.mark.parametrize("good", [8, 16, 64, 1024])
def test_check_resolution_accepts(good):
    assert schema.check_resolution(good) == good


def test_image_key():
    assert schema.image_key(64, 64) == "image"
    assert schema.image_key(8, 64) == "image_8"


def test_grid_layout_and_png_round_trip(rng):
    imgs = rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
    grid = images.make_grid(imgs, cols=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    np.testing.assert_array_equal(grid[1:5, 1:7], imgs[0])
    np.testing.assert_array_equal(grid[6:10, 8:14], imgs[4])
    np.testing.assert_array_equal(images.decode_png(images.encode_png(grid)), grid)
