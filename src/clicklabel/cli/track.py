"""``clicklabel track``: prompt an object on a frame of a sequence and propagate it with SAM 2.1; and the part of
``clicklabel add`` that adds videos, TIFF stacks and folders of frames as sequences."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from ..errors import PromptError
from .common import finite_float, parse_box, parse_point, positive_int


def split_sequences(items: list[str], folders_are_sequences: bool) -> tuple[list[str], list[str]]:
    """(videos, TIFF stacks and, with --sequence, folders; everything else) of ``clicklabel add``'s items."""
    from ..track.sources import is_stack, is_video

    seqs = [i for i in items if is_video(i) or is_stack(i) or (folders_are_sequences and Path(i).is_dir())]
    return seqs, [i for i in items if i not in seqs]


def add_sequence_items(store, items: list[str], args) -> int:
    """Add each item as a sequence (a progress bar per video); returns how many frames were added."""
    from tqdm import tqdm

    from ..track.sources import add_sequence

    if args.name and len(items) > 1:
        raise PromptError("--name names one sequence: add one video, stack or folder at a time with it")
    frames = 0
    for item in items:
        bar = tqdm(unit="frame", desc=f"adding {Path(item).name}", disable=None)
        stop = threading.Event()

        def progress(done, total, bar=bar):
            bar.total = total
            bar.update(done - bar.n)

        try:
            rep = add_sequence(store, item, step=args.step, name=args.name, image_format=args.frame_format,
                               progress=progress, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            raise
        finally:
            bar.close()
        for line in rep.skipped:
            print(f"skipped: {line}")
        where = f" (frames in {rep.folder})" if rep.kind != "folder" else ""
        print(f"sequence {rep.sequence_id} ({rep.name!r}, {rep.kind}): {rep.frames} frames added{where}")
        frames += rep.frames
    return frames


def export_ytvis_args(args) -> int:
    """``clicklabel export --format ytvis``."""
    from ..coco.ytvis import export_ytvis
    from ..project import open_project

    if args.polygons:
        raise PromptError("--polygons is for COCO: YouTube-VIS masks are RLE")
    rep = export_ytvis(open_project(args.project), args.out, images_root=args.images_root)
    print(f"wrote {args.out}: {rep.videos} videos, {rep.tracks} tracks, {rep.masks} per-frame masks")
    if rep.unlabelled:
        print(f"{rep.unlabelled} tracks have no label yet (category 'unlabelled')")
    if rep.left_out:
        print(f"{rep.left_out} objects are outside any track and not in this file (`--format coco` has them)")
    return 0


def cmd_track(args) -> int:
    from tqdm import tqdm

    from ..project import open_project
    from ..track.model import video_model
    from ..track.workflow import track_object

    if sum(x is not None and x != [] for x in (args.point, args.box, args.from_object)) == 0:
        raise PromptError("give a click (--point X,Y), a box (--box X0,Y0,X1,Y1) or --from-object ID")
    if args.from_object is None and args.frame is None:
        raise PromptError("--frame T: the frame the click or box is on")
    points = labels = None
    if args.point:
        parsed = [parse_point(p) for p in args.point]
        points, labels = [[x, y] for x, y, _ in parsed], [lab for _, _, lab in parsed]
    box = parse_box(args.box) if args.box else None
    store = open_project(args.project)
    if args.sequence is None:
        seqs = store.sequences()
        if len(seqs) != 1:
            names = ", ".join(f"{s.id} ({s.name})" for s in seqs) or "none yet: `clicklabel add PROJECT VIDEO.mp4`"
            raise PromptError(f"--sequence: which one? the project has {len(seqs)} sequences: {names}")
        args.sequence = seqs[0].id
    store.sequence(args.sequence)  # a wrong name fails before the model loads
    model = video_model(args.model or "sam2.1_hiera_tiny", args.checkpoint, args.random_weights, args.device)
    bar = tqdm(unit="frame", desc="propagating", disable=None)
    stop = threading.Event()

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        rep = track_object(store, model, args.sequence, args.frame, points=points, labels=labels, box=box,
                           object_id=args.from_object, track_id=args.track, direction=args.direction,
                           min_score=args.min_score, patience=args.patience, progress=progress, stop=stop,
                           model_name=args.model or "sam2.1_hiera_tiny", new=args.new)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        bar.close()
    if rep.corrected:
        print(f"correcting track {rep.track_id} from frame {rep.prompted} ({rep.direction}); --new starts another")
    for line in rep.lines():
        print(line)
    if args.random_weights:
        print("note: random weights: the masks mean nothing (timing and plumbing only)", file=sys.stderr)
    return 0


def add_track_parser(sub) -> None:
    p = sub.add_parser("track", help="click an object on a frame of a sequence; SAM 2.1 follows it through the "
                                     "sequence (one track id); a click on a tracked frame corrects it")
    p.add_argument("project")
    p.add_argument("--sequence", help="the sequence's id or name (`clicklabel add` prints them; default: the "
                                      "project's only sequence)")
    p.add_argument("--frame", type=int, help="the frame the click or box is on (0 = the first)")
    p.add_argument("--point", action="append", help="X,Y (positive) or X,Y:0 (negative), in frame pixels; repeat")
    p.add_argument("--box", help="X0,Y0,X1,Y1 in frame pixels")
    p.add_argument("--from-object", type=int, help="start from this object's mask (an object of a track: its "
                                                   "track is corrected from that frame)")
    p.add_argument("--track", type=int, help="correct this track: the click or box on --frame fixes that frame "
                                             "and propagation runs again from it")
    p.add_argument("--new", action="store_true", help="a new track even where the click is on a tracked object's "
                                                      "mask (by default such a click corrects that track)")
    p.add_argument("--direction", choices=["both", "forward", "backward"],
                   help="default: both for a new object, forward for a correction (frames before it stay)")
    p.add_argument("--min-score", type=finite_float, default=0.0,
                   help="the object score below which the object is not on a frame (SAM 2's own cut: 0)")
    p.add_argument("--patience", type=positive_int, default=3,
                   help="stop after this many frames in a row without the object (it left the view)")
    p.add_argument("--model", default=None, help="a SAM 2.1 model (default sam2.1_hiera_tiny), or auto with "
                                                 "--checkpoint")
    p.add_argument("--checkpoint", help="your own checkpoint file (no hash check)")
    p.add_argument("--random-weights", action="store_true", help="random weights (plumbing and timing only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(func=cmd_track)
