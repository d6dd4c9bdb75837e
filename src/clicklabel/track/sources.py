"""Sequences into a project: a video (decoded with PyAV, the ``[video]`` extra), a folder of frames, or a multi-page
TIFF stack.

A video's or a TIFF's frames are written, one at a time as they are decoded (never the whole clip in memory), as
image files in a folder beside the project (``frames/<sequence name>/00000.jpg``, numbered by their frame in the
source), and become images of the project with their index. So every reader of the project (the embedding cache,
the widget, labelling, COCO and YouTube-VIS export) reads frames as the image files they are, by random access and
without a decoder; SAM 2's own video predictor and YouTube-VIS keep videos as the same folders of JPEG frames.
JPEG at quality 95 (as SAM 2's tools extract) keeps the folder small; ``image_format='png'`` keeps frames lossless.
TIFF pages are written as PNG (16-bit pages stay 16-bit). A folder of frames is used where it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClickLabelError, ImageError
from ..images import file_hash, image_size, list_images

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts"}
TIFF_SUFFIXES = {".tif", ".tiff"}
FRAME_FORMATS = ("jpg", "png")
JPEG_QUALITY = 95


@dataclass
class SequenceReport:
    sequence_id: int
    name: str
    kind: str
    frames: int = 0
    folder: Path | None = None  # where the frames are
    cancelled: bool = False
    skipped: list[str] = field(default_factory=list)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_stack(path: str | Path) -> bool:
    """Whether ``path`` is a TIFF with more than one page."""
    p = Path(path)
    if p.suffix.lower() not in TIFF_SUFFIXES or not p.is_file():
        return False
    from PIL import Image

    try:
        with Image.open(p) as im:
            return getattr(im, "n_frames", 1) > 1
    except OSError:
        return False


def add_sequence(store, source: str | Path, *, step: int = 1, name: str | None = None, image_format: str = "jpg",
                 progress: Callable[[int, int | None], None] | None = None,
                 stop: threading.Event | None = None) -> SequenceReport:
    """Add a video, a multi-page TIFF or a folder of frames to ``store`` as one sequence (every ``step``-th frame).
    ``progress(done, total)`` after each frame (``total`` None when the container does not say); ``stop`` set:
    the frames written so far stay in the project, the report says ``cancelled``."""
    src = Path(source).expanduser()
    if not src.exists():
        raise ImageError(f"not found: {src}")
    if step < 1:
        raise ClickLabelError(f"--step must be a whole number >= 1, not {step}")
    if image_format not in FRAME_FORMATS:
        raise ClickLabelError(f"frame format {image_format!r}: one of {', '.join(FRAME_FORMATS)}")
    name = name or (src.name if src.is_dir() else src.stem)
    if any(s.name == name for s in store.sequences()):
        raise ClickLabelError(f"the project already has a sequence named {name!r}; give another with --name")
    if src.is_dir():
        return _add_folder(store, src, name, step, progress)
    if is_video(src):
        return _add_video(store, src, name, step, image_format, progress, stop)
    if src.suffix.lower() in TIFF_SUFFIXES:
        return _add_tiff(store, src, name, step, progress, stop)
    raise ImageError(f"{src}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}), a TIFF stack or a folder of frames")


def frames_folder(store, name: str) -> Path:
    """Where a sequence's decoded frames go, beside the project file: ``frames/<name>/`` in a project folder,
    ``<project>-frames/<name>/`` beside a project file of another name (two projects in one folder never mix)."""
    from ..project import PROJECT_FILE

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "sequence"
    base = "frames" if store.path.name == PROJECT_FILE else f"{store.path.stem}-frames"
    return store.path.parent / base / safe


def _add_folder(store, folder: Path, name: str, step: int, progress) -> SequenceReport:
    files = list_images(folder)[::step]
    if not files:
        raise ImageError(f"no images in {folder}")
    sid = store.add_sequence(name, "folder", str(folder.resolve()), None, step)
    rep = SequenceReport(sid, name, "folder", folder=folder)
    for i, f in enumerate(files):
        try:
            h, w = image_size(f)
            store.add_frame(sid, rep.frames, f.resolve(), w, h, file_hash(f))
            rep.frames += 1
        except ImageError as exc:
            rep.skipped.append(str(exc))
        if progress:
            progress(i + 1, len(files))
    return rep


def _write(store, sid: int, rep: SequenceReport, image, path: Path) -> None:
    """Save a PIL image as frame ``rep.frames`` of the sequence."""
    from ..files import atomic_write

    with atomic_write(path, durable=False) as f:
        if path.suffix == ".jpg":
            image.save(f, format="JPEG", quality=JPEG_QUALITY)
        else:
            image.save(f, format="PNG")
    store.add_frame(sid, rep.frames, path, image.width, image.height, file_hash(path))
    rep.frames += 1


def _add_video(store, src: Path, name: str, step: int, image_format: str, progress, stop) -> SequenceReport:
    try:
        import av
    except ImportError:
        raise ClickLabelError("videos need PyAV: pip install 'clicklabel[video]'") from None
    try:
        container = av.open(str(src))
    except (av.FFmpegError, OSError) as exc:
        raise ImageError(f"cannot read video {src}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ImageError(f"{src} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else None
        total = -(-stream.frames // step) if stream.frames else None
        folder = frames_folder(store, name)
        folder.mkdir(parents=True, exist_ok=True)
        sid = store.add_sequence(name, "video", str(src.resolve()), fps, step)
        rep = SequenceReport(sid, name, "video", folder=folder)
        try:
            for n, frame in enumerate(container.decode(stream)):
                if stop is not None and stop.is_set():
                    rep.cancelled = True
                    break
                if n % step:
                    continue
                _write(store, sid, rep, frame.to_image(), folder / f"{n:05d}.{image_format}")
                if progress:
                    progress(rep.frames, total)
        except av.FFmpegError as exc:  # a damaged tail: the frames before it are kept
            rep.skipped.append(f"{src}: decoding stopped after {rep.frames} frames: {exc}")
    if rep.frames == 0 and not rep.cancelled:
        raise ImageError(f"no frames could be decoded from {src}")
    return rep


def _add_tiff(store, src: Path, name: str, step: int, progress, stop) -> SequenceReport:
    from PIL import Image, ImageSequence

    try:
        im = Image.open(src)
    except OSError as exc:
        raise ImageError(f"cannot read image {src}: {exc}") from None
    with im:
        pages = getattr(im, "n_frames", 1)
        folder = frames_folder(store, name)
        folder.mkdir(parents=True, exist_ok=True)
        sid = store.add_sequence(name, "tiff", str(src.resolve()), None, step)
        rep = SequenceReport(sid, name, "tiff", folder=folder)
        for n, page in enumerate(ImageSequence.Iterator(im)):
            if stop is not None and stop.is_set():
                rep.cancelled = True
                break
            if n % step:
                continue
            page = page.copy()
            if page.mode not in ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"):
                import numpy as np

                from ..images import to_rgb8

                page = Image.fromarray(to_rgb8(np.array(page)))
            _write(store, sid, rep, page, folder / f"{n:05d}.png")
            if progress:
                progress(rep.frames, -(-pages // step))
    return rep
