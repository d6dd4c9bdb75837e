"""The project store's SQLite schema and its migrations (see ``store.py``)."""

SCHEMA_VERSION = 8
PROVENANCES = ("manual", "click", "box", "proposed", "imported", "concept")
LABEL_STATUSES = ("pending", "done", "failed", "edited")
MAX_LABEL_CHARS = 100  # a label or supercategory, from a person, a model or a COCO file
UNDOABLE = ("accept", "delete", "relabel", "accept_proposal", "reject_proposal", "refine", "review", "decide_check")
MASK_STATES = ("mask", "box")  # an object with its mask, or a box without a mask yet (a detection data set)
CHECK_VERDICTS = ("agree", "disagree", "failed")
CHECK_DECISIONS = ("accepted", "kept")  # a person took the model's label, or kept the object's own

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER NOT NULL, height INTEGER NOT NULL,
    hash TEXT, status TEXT NOT NULL DEFAULT 'todo', created REAL NOT NULL);
CREATE TABLE categories (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, supercategory TEXT);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
    rle TEXT NOT NULL, bbox TEXT NOT NULL, area INTEGER NOT NULL, iscrowd INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'accepted' CHECK (state IN ('accepted', 'proposed', 'rejected', 'deleted')),
    category_id INTEGER REFERENCES categories(id), label TEXT, coarse TEXT,
    label_status TEXT NOT NULL DEFAULT 'pending' CHECK (label_status IN ('pending', 'done', 'failed', 'edited')),
    label_confidence REAL, label_error TEXT,
    provenance TEXT NOT NULL CHECK (provenance IN ('manual', 'click', 'box', 'proposed', 'imported')),
    clicks INTEGER, seconds REAL, score REAL, engine TEXT, model TEXT,
    lmm_model TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, source_id INTEGER,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX objects_image ON objects(image_id, state);
CREATE INDEX objects_label ON objects(label_status);
CREATE TABLE label_history (
    id INTEGER PRIMARY KEY, object_id INTEGER NOT NULL, label TEXT, coarse TEXT, confidence REAL,
    status TEXT, source TEXT, t REAL NOT NULL);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, image_id INTEGER, object_id INTEGER,
    data TEXT, undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX events_kind ON events(kind, undone);
CREATE INDEX events_redo ON events(undone) WHERE undone = 1;
"""
# Version 2: one name for the coarse class in the core, COCO's ``supercategory``.
_V2 = """
ALTER TABLE objects RENAME COLUMN coarse TO supercategory;
ALTER TABLE label_history RENAME COLUMN coarse TO supercategory;
"""
# Version 3: a labelling run claims the objects it sends (a lease that expires), so two runs (two `clicklabel
# label`, or the CLI and the widget) never send one object twice; and the images' sizes are checked once against
# their files (clicklabel 0.1 stored EXIF-rotated photos with their size before rotation).
CHECK_SIZES_KEY = "check_image_sizes"
_V3 = f"""
CREATE TABLE label_leases (object_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
INSERT OR REPLACE INTO meta(key, value) VALUES ('{CHECK_SIZES_KEY}', '1');
"""
# Version 4: detection data sets. An object can be a box without a mask yet (``mask_state`` 'box': its ``rle`` is
# the empty mask, ``bbox`` the box, ``area`` the box's area, as COCO has it for boxes); ``refine`` gives it SAM's
# mask and keeps the box it came with (``given_bbox``), the engine that tried (``refined_by``) and why a person
# should look at the result (``review``, NULL when nothing is wrong). ``label_checks``: the model's label for an
# object that already has one (``clicklabel label --check``), the verdict, and a person's decision on it.
_V4 = """
ALTER TABLE objects ADD COLUMN mask_state TEXT NOT NULL DEFAULT 'mask' CHECK (mask_state IN ('mask', 'box'));
ALTER TABLE objects ADD COLUMN given_bbox TEXT;
ALTER TABLE objects ADD COLUMN refined_by TEXT;
ALTER TABLE objects ADD COLUMN review TEXT;
CREATE INDEX objects_mask_state ON objects(mask_state) WHERE mask_state != 'mask';
CREATE INDEX objects_review ON objects(image_id) WHERE review IS NOT NULL;
CREATE TABLE label_checks (
    object_id INTEGER PRIMARY KEY, given TEXT NOT NULL, label TEXT, supercategory TEXT, confidence REAL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree', 'failed')), error TEXT, lmm_model TEXT,
    decision TEXT CHECK (decision IS NULL OR decision IN ('accepted', 'kept')), t REAL NOT NULL);
CREATE INDEX label_checks_verdict ON label_checks(verdict, decision);
"""
# Version 5: labels that learn. Each object's descriptor (the segmentation model's image features pooled under its
# mask, L2-normalised float32) and each image's (the features pooled over the whole image), with the model they come
# from (descriptors of different models are never compared). The neighbours of an object are found among the
# accepted objects whose label a person gave or confirmed; the labels are read from ``objects`` at query time, so
# relabel, delete and their undo change the neighbours with nothing else to update.
_V5 = """
CREATE TABLE descriptors (object_id INTEGER PRIMARY KEY, model_id TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX descriptors_model ON descriptors(model_id);
CREATE TABLE image_descriptors (image_id INTEGER PRIMARY KEY, model_id TEXT NOT NULL, vector BLOB NOT NULL);
"""
# Version 6: nothing lost between tools. What a COCO file says that has no column here (an image's license and URL,
# an annotation's attributes such as CVAT's occluded or rotation, a category's colour) is kept per row as a JSON
# object and written back on export; the file's own top-level keys (info, licenses) go to meta ``coco_extra``.
_V6 = """
ALTER TABLE images ADD COLUMN extra TEXT;
ALTER TABLE objects ADD COLUMN extra TEXT;
ALTER TABLE categories ADD COLUMN extra TEXT;
"""
# Version 7: provenance 'concept', an instance found by a concept prompt (SAM 3's phrase or exemplar, or the
# multimodal model's box for a phrase), with its class already given. SQLite cannot change a CHECK constraint, so
# the objects table is copied into one whose CHECK allows it (same columns, same order, same indexes).
_OBJECT_COLUMNS = ("id, image_id, rle, bbox, area, iscrowd, state, category_id, label, supercategory, label_status, "
                   "label_confidence, label_error, provenance, clicks, seconds, score, engine, model, lmm_model, "
                   "prompt_tokens, completion_tokens, cost, source_id, created, updated, mask_state, given_bbox, "
                   "refined_by, review, extra")
_V7 = f"""
CREATE TABLE objects_v7 (
    id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
    rle TEXT NOT NULL, bbox TEXT NOT NULL, area INTEGER NOT NULL, iscrowd INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'accepted' CHECK (state IN ('accepted', 'proposed', 'rejected', 'deleted')),
    category_id INTEGER REFERENCES categories(id), label TEXT, supercategory TEXT,
    label_status TEXT NOT NULL DEFAULT 'pending' CHECK (label_status IN ('pending', 'done', 'failed', 'edited')),
    label_confidence REAL, label_error TEXT,
    provenance TEXT NOT NULL CHECK (provenance IN ('manual', 'click', 'box', 'proposed', 'imported', 'concept')),
    clicks INTEGER, seconds REAL, score REAL, engine TEXT, model TEXT,
    lmm_model TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, source_id INTEGER,
    created REAL NOT NULL, updated REAL NOT NULL,
    mask_state TEXT NOT NULL DEFAULT 'mask' CHECK (mask_state IN ('mask', 'box')), given_bbox TEXT, refined_by TEXT,
    review TEXT, extra TEXT);
INSERT INTO objects_v7({_OBJECT_COLUMNS}) SELECT {_OBJECT_COLUMNS} FROM objects;
DROP TABLE objects;
ALTER TABLE objects_v7 RENAME TO objects;
CREATE INDEX objects_image ON objects(image_id, state);
CREATE INDEX objects_label ON objects(label_status);
CREATE INDEX objects_mask_state ON objects(mask_state) WHERE mask_state != 'mask';
CREATE INDEX objects_review ON objects(image_id) WHERE review IS NOT NULL;
"""
# Version 8: sequences (video frames, a folder of frames, the pages of a TIFF stack). A sequence's frames are images
# of the project with their ``frame_index`` (0, 1, ... in display order); a track groups one object's per-frame
# objects; ``track_role`` says whether a person made the object on that frame ('annotated': propagation keeps it
# fixed and uses it as a conditioning frame) or propagation did ('propagated': a later propagation may replace it).
# (The added columns name sequences.id and tracks.id without a REFERENCES clause, as the other added columns do.)
TRACK_ROLES = ("annotated", "propagated")
_V8 = """
CREATE TABLE sequences (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, source TEXT, fps REAL,
    step INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL);
ALTER TABLE images ADD COLUMN sequence_id INTEGER;
ALTER TABLE images ADD COLUMN frame_index INTEGER;
CREATE UNIQUE INDEX images_frame ON images(sequence_id, frame_index) WHERE sequence_id IS NOT NULL;
CREATE TABLE tracks (
    id INTEGER PRIMARY KEY, sequence_id INTEGER NOT NULL REFERENCES sequences(id), created REAL NOT NULL);
ALTER TABLE objects ADD COLUMN track_id INTEGER;
ALTER TABLE objects ADD COLUMN track_role TEXT CHECK (track_role IS NULL OR track_role IN ('annotated', 'propagated'));
CREATE INDEX objects_track ON objects(track_id) WHERE track_id IS NOT NULL;
"""
# Migrations from version N-1 to N, applied in order; version 1 is the initial schema. Later ones only add, except
# version 7, which rebuilds the objects table to widen a CHECK.
MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5, 6: _V6, 7: _V7, 8: _V8}
