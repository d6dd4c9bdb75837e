import numpy as np
import pytest
from PIL import Image

from clicklabel.errors import ImageError
from clicklabel.images import image_hash, list_images, load_image, to_rgb8


def test_gray_rgba_and_two_channel_become_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb8(gray)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
    rgba = np.dstack([gray, gray + 1, gray + 2, np.zeros_like(gray)])
    assert (to_rgb8(rgba) == rgba[..., :3]).all()
    assert (to_rgb8(np.dstack([gray, gray * 0]))[..., 1] == gray).all()


def test_uint16_and_float_are_scaled_to_full_range():
    img16 = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    out = to_rgb8(img16)[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert out[0, 1] == round((2000 - 1000) * 255 / 4000)
    f = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    assert to_rgb8(f)[..., 0].tolist() == [[0, 128], [255, 64]]
    assert to_rgb8(np.full((2, 2), 7, np.uint16)).max() == 0
    assert to_rgb8(np.array([[np.nan, 1.0]]))[0, 0, 0] == 0


def test_bad_shapes_raise():
    with pytest.raises(ImageError):
        to_rgb8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageError):
        to_rgb8(np.zeros((0, 3), np.uint8))


def test_load_image_kinds(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert (load_image(tmp_path / "a.png") == rgba[..., :3]).all()
    g16 = rng.integers(0, 65535, (20, 30), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (20, 30, 3) and out.max() == 255 and out.min() == 0
    Image.fromarray(rgba[..., 0]).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").shape == (20, 30, 3)


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "t.txt")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        load_image(tmp_path / "cut.jpg")


def test_hash_and_listing(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert image_hash(a) != image_hash(b)
    assert image_hash(a) == image_hash(a.copy())
    for n in ["b.jpg", "a.PNG", "notes.txt"]:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.jpg"]
