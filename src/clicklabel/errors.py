"""Errors that users see: one clear line each, raised by the core and printed by the CLI and the plugin."""

from __future__ import annotations


class ClickLabelError(Exception):
    """A problem the user can act on; its message is one line that says what happened and what to do."""


class ImageError(ClickLabelError):
    """An image file is missing, unreadable, or of a kind we cannot use."""


class ImageTooLarge(ImageError):
    """An image has more pixels than clicklabel reads (``images.MAX_PIXELS``)."""


class PromptError(ClickLabelError):
    """A point or box prompt is malformed or lies outside the image."""


class WeightsError(ClickLabelError):
    """A checkpoint is missing, truncated, corrupt, or of another model type."""


class StoreError(ClickLabelError):
    """The project store cannot be opened or does not hold what was asked for."""


class CocoError(ClickLabelError):
    """A COCO file or annotation is malformed."""


class LabelError(ClickLabelError):
    """The labelling model could not be reached or answered something unusable."""


class ResourceError(ClickLabelError):
    """The input was fine, but the machine could not do the work: a full disk, read-only media, a project that
    another program keeps busy, not enough memory (the command exits with status 1, not 2)."""


class ResourceLabelError(LabelError, ResourceError):
    """Labelling cannot go on for the machine's sake (a full disk under the label cache): exit status 1."""


class ServerDown(ResourceLabelError):
    """No model server answered any request of a run (refused, unreachable, timed out): the run stops early."""
