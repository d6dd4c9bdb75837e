"""Sequences and tracking: video, frame folders and TIFF stacks as project sequences (``sources``), SAM 2.1
propagation of an object through a sequence (``propagate``, its bounded per-frame state in ``memory``), and the
project workflow that writes a track's per-frame objects (``workflow``)."""
