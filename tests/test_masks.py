import numpy as np

from clicklabel.masks import box_iou, decode_rle, encode_rle, mask_iou, rle_area, rle_bbox, tight_bbox


def test_tight_bbox_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = np.zeros((40, 50), bool)
        y0, x0 = rng.integers(0, 30), rng.integers(0, 40)
        m[y0 : y0 + rng.integers(1, 10), x0 : x0 + rng.integers(1, 10)] = True
        ys, xs = np.nonzero(m)
        assert tight_bbox(m) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert tight_bbox(np.zeros((5, 5), bool)) is None


def test_rle_round_trip_and_measures():
    rng = np.random.default_rng(1)
    m = rng.random((31, 17)) > 0.6
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [31, 17]
    assert (decode_rle(rle) == m).all()
    assert rle_area(rle) == m.sum()
    assert rle_bbox(rle) == tight_bbox(m)
    assert rle_bbox(encode_rle(np.zeros((3, 3), bool))) is None


def test_uncompressed_rle_decodes():
    m = np.zeros((4, 3), bool)
    m[1:3, 1] = True  # column-major runs: 5 zeros, 2 ones, 5 zeros
    assert (decode_rle({"size": [4, 3], "counts": [5, 2, 5]}) == m).all()


def test_ious():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert mask_iou(a, b) == 4 / 12
    assert box_iou((0, 0, 2, 2), (1, 1, 2, 2)) == 1 / 7


def test_decoding_warns_nothing_where_every_warning_is_shown():
    """pycocotools' decoder trips numpy 2's DeprecationWarning about its own ``__array__``; napari's workers put
    "always" first in the filters and show every warning as a pop-up. Decoding (and the exact polygons, which decode
    to check themselves) warns nothing there; other deprecations still show."""
    import warnings

    from clicklabel.masks import mask_to_polygons

    m = np.zeros((40, 50), bool)
    m[5:10, 5:20] = True
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        assert np.array_equal(decode_rle(encode_rle(m)), m) and mask_to_polygons(m) is not None
        assert np.array_equal(decode_rle(encode_rle(m)), m)
        warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in got] == ["another deprecation"]
