"""A model whose image encoder is loaded only when an image must be encoded.

A click on a cached image needs the prompt encoder and the mask decoder only (a few MB), yet building and loading a
whole SAM vit_b (90 M encoder weights: random initialisation by the builder, then a 375 MB copy) took most of a
``clicklabel segment`` run on a cached image. Here the checkpoint is memory-mapped, the model is built with
``torch.nn.init`` held still (its tensors allocated, never written: no time, and untouched pages take no memory),
the image encoder is moved to PyTorch's ``meta`` device (shapes only), and only the weights outside it are put in
place (``assign``: the mapped tensors themselves, no copy). ``complete`` builds the real encoder the first time an
image is encoded. (Building on the meta device directly imports ``torch._dynamo`` for its random tensors: a second
more per process.)
"""

from __future__ import annotations

import contextlib
import threading

ENCODER_PREFIX = "image_encoder."
_BUILD = threading.Lock()  # init functions are held still process-wide: one build at a time


@contextlib.contextmanager
def uninitialised():
    """Modules built inside keep their tensors as allocated: ``torch.nn.init``'s in-place initialisers do nothing
    (the weights are loaded or replaced right after). Two such builds never overlap (a lock); a module built by
    another thread meanwhile, outside it, would keep its allocated values too (clicklabel builds none so)."""
    from torch.nn import init

    names = [n for n in vars(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    with _BUILD:
        for n in names:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        try:
            yield
        finally:
            for n, fn in saved.items():
                setattr(init, n, fn)


class LazyEncoderWeights:
    """What finishing a lazily loaded model needs: its family, name and (memory-mapped) state dict."""

    def __init__(self, family: str, name: str, state_dict: dict):
        self.family, self.name, self._sd = family, name, state_dict
        self._lock = threading.Lock()
        self.completed = False

    def complete(self, module, device: str) -> None:
        """Build the real image encoder into ``module`` (on ``device``) with the checkpoint's weights, once."""
        with self._lock:
            if self.completed:
                return
            from .models import build

            with uninitialised():  # every weight is loaded right after (strict): no random initialisation
                full = build(self.family, self.name, self._sd)
            full.load_state_dict(self._sd, strict=True)
            module.image_encoder = full.image_encoder.to(device).eval()
            for name, buf in full.named_buffers():  # non-persistent buffers the meta build left empty
                owner, _, leaf = name.rpartition(".")
                target = module.get_submodule(owner) if owner else module
                if leaf in target._buffers and target._buffers[leaf] is not None and target._buffers[leaf].is_meta:
                    target._buffers[leaf] = buf.to(device)
            self._sd = None
            self.completed = True


def build_without_encoder(family: str, name: str, state_dict: dict):
    """The model with every weight outside the image encoder loaded and the encoder left on the meta device, or
    None when the family's builder fails so (the caller loads the whole model). Raises RuntimeError when the weights
    outside the encoder do not fit the architecture (as a strict load would)."""
    from .models import build

    try:
        with uninitialised():
            module = build(family, name, state_dict)
        module.image_encoder.to("meta")
    except Exception:  # noqa: BLE001 - any builder failure: the caller loads the whole model instead
        return None
    rest = {k: v for k, v in state_dict.items() if not k.startswith(ENCODER_PREFIX)}
    missing, unexpected = module.load_state_dict(rest, strict=False, assign=True)
    wrong = [k for k in missing if not k.startswith(ENCODER_PREFIX)] + list(unexpected)
    still_meta = [n for n, p in module.named_parameters() if p.is_meta and not n.startswith(ENCODER_PREFIX)]
    if wrong or still_meta:
        raise RuntimeError(f"Error(s) in loading state_dict: keys {(wrong + still_meta)[:3]} do not fit")
    return module.eval()


def to_device(module, device: str):
    """``module.to(device)`` for every tensor that is not on the meta device (those stay as they are)."""
    return module._apply(lambda t: t if t.is_meta else t.to(device))


def encoder_loaded(module) -> bool:
    """Whether ``module``'s image encoder holds real weights (not meta placeholders)."""
    return not any(p.is_meta for p in module.image_encoder.parameters())
