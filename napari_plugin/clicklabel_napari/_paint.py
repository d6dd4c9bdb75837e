"""A mask cut to its box (``crop_of``, any thread), and a block written into a Labels layer with only that region
sent to the screen (``paint``)."""

from __future__ import annotations

import numpy as np

from clicklabel.large_images import needs_pyramid, rle_crop
from clicklabel.masks import tight_bbox
from clicklabel.segment.region import RegionMask


def paint(layer, top: int, left: int, block: np.ndarray) -> None:
    """Write ``block`` into a Labels layer's data at (top, left) and send only that region to the screen."""
    rows, cols = slice(top, top + block.shape[0]), slice(left, left + block.shape[1])
    layer.data[rows, cols] = block
    if not layer.visible:
        return  # napari draws the whole layer when it is shown again
    try:  # napari's partial update (what its brush uses): the region's texture values, then that region only
        shown = layer._slice.image
        if layer.contour or shown.raw.shape != layer.data.shape or not np.may_share_memory(shown.raw, layer.data):
            raise AttributeError("the displayed slice is not the data")
        shown.view[rows, cols] = layer.colormap._data_to_texture(block)
        layer._updated_slice = (rows, cols)
        layer._partial_labels_refresh()
    except AttributeError:  # another napari, or a contour view: the same picture, drawn in full
        layer.refresh()


def crop_of(mask: np.ndarray):
    """((row, col), the mask inside its tight box), or None for an empty mask. Any thread."""
    box = tight_bbox(mask)
    if box is None:
        return None
    x, y, w, h = box
    return (y, x), np.ascontiguousarray(mask[y : y + h, x : x + w])


def result_crop(result):
    """crop_of(an engine's mask): a region mask (a large image's) is cut from its region, never made full size."""
    if isinstance(result, RegionMask):
        if result.bbox is None:
            return None
        tight = result.tight()
        return (tight.offset[1], tight.offset[0]), np.ascontiguousarray(tight.crop)
    return crop_of(result.mask)


def record_crop(ob):
    """crop_of(a stored object's mask): on a large image decoded over its box only (``large_images.rle_crop``)."""
    if needs_pyramid(ob.rle["size"]):
        return rle_crop(ob.rle)
    return crop_of(ob.mask)
