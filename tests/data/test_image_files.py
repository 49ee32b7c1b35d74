"""Image files a user passes to ``explain --images``: oversized images are a clear error and
16-bit images are scaled, not clipped (issue 18)."""

import numpy as np
import pytest
from PIL import Image

from attrlab.data.files import load_images

META1 = {"in_channels": 1, "input_size": 16, "mean": [0.0], "std": [1.0]}
META3 = {"in_channels": 3, "input_size": 16, "mean": [0.0] * 3, "std": [1.0] * 3}


def test_decompression_bomb_is_a_value_error(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (32, 32)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1024 pixels > 2 x the limit
    with pytest.raises(ValueError, match="cannot read image .*big.png.*pixels"):
        load_images([str(path)], META3)


@pytest.mark.parametrize("meta", [META1, META3])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, meta):
    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    path16, path8 = tmp_path / "g16.png", tmp_path / "g8.png"
    Image.fromarray(ramp).save(path16)
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(path8)
    assert Image.open(path16).mode.startswith("I")
    got, ref = load_images([str(path16)], meta), load_images([str(path8)], meta)
    assert got.shape == (1, meta["in_channels"], 16, 16)
    assert (got >= 0.999).float().mean() < 0.05  # not saturated
    assert (got - ref).abs().max() <= 1.5 / 255
