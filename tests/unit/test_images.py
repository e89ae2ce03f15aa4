"""Bad image files get an error that names them (OpenCV alone would pad a truncated JPEG silently)."""

import io

import numpy as np
import pytest
from PIL import Image

from retrieval.images import BadImageError, load_gray


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content",
    [("truncated.jpg", _jpeg_bytes()[:300]), ("empty.jpg", b""), ("notes.jpg", b"this is text, not an image"), ("missing.jpg", None)],
)
def test_bad_images_are_named(tmp_path, name, content):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(BadImageError, match=name):
        load_gray(p)


def test_good_image_decodes_to_gray(tmp_path):
    p = tmp_path / "ok.jpg"
    p.write_bytes(_jpeg_bytes())
    g = load_gray(p)
    assert g.shape == (64, 80) and g.dtype == np.uint8
