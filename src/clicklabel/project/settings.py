"""The project's labelling settings (the multimodal model, vocabulary, prompt, detail, concurrency, crop): stored
once in the project, used by ``clicklabel label``, ``propose --label`` and the widget alike."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import ClickLabelError
from .store import Store

META_KEY = "label_settings"
LEGACY_VOCAB_KEY = "vocabulary"  # written by clicklabel 0.1's `label --vocab`


@dataclass
class LabelSettings:
    lmm: str = "gpt-4o-mini"
    vocabulary: list[str] = field(default_factory=list)
    template: str | None = None  # the user prompt; ``{vocabulary}`` is filled in
    detail: str = "low"
    concurrency: int = 8
    crop_mode: str = "mask"
    few_shot: int = 0  # examples per request: the nearest objects whose label a person gave or confirmed

    def updated(self, **changes) -> LabelSettings:
        """A copy with the given fields changed; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def labeler_config(self, **extra):
        """The ``LabelerConfig`` for these settings (``extra``: timeout, base_url, api_key, ...)."""
        from ..label import CropSettings, LabelerConfig

        return LabelerConfig(lmm=self.lmm, vocabulary=list(self.vocabulary) or None, template=self.template,
                             detail=self.detail, concurrency=self.concurrency,
                             crop=CropSettings(mode=self.crop_mode), few_shot=self.few_shot, **extra)


def load_label_settings(store: Store) -> LabelSettings:
    """The project's settings (defaults where none were saved)."""
    raw = store.get_meta(META_KEY)
    if raw:
        try:
            data = json.loads(raw)
        except ValueError:
            raise ClickLabelError(f"{store.path}: the saved labelling settings are unreadable") from None
        known = {f.name for f in fields(LabelSettings)}
        return LabelSettings(**{k: v for k, v in data.items() if k in known})
    legacy = store.get_meta(LEGACY_VOCAB_KEY)
    return LabelSettings(vocabulary=json.loads(legacy) if legacy else [])


def save_label_settings(store: Store, settings: LabelSettings) -> None:
    """Store ``settings`` in the project (one transaction)."""
    store.set_meta(META_KEY, json.dumps(asdict(settings)))
