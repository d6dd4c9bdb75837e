"""Token prices and image-token rules, to turn usage into money and to estimate a run before sending anything.

Defaults: OpenAI's API pricing page (standard tier, USD per million tokens) and its vision guide for image
tokens, as of 2025-06. Prices change: pass your own table as JSON (``--prices FILE`` or $CLICKLABEL_PRICES),
``{"model": {"input": 0.15, "output": 0.6, "image_base": 85, "image_tile": 170}}``. Unknown models (a local
server) cost 0.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabelError

SOURCE = "OpenAI API pricing page and vision guide, standard tier, as of 2025-06"


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens
    image_base: int = 85  # tokens per image at detail 'low' (and the base at 'high')
    image_tile: int = 170  # extra tokens per 512 px tile at detail 'high'


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60, 2833, 5667),
    "gpt-4o": Price(2.50, 10.00, 85, 170),
    "gpt-4.1": Price(2.00, 8.00, 85, 170),
    "gpt-4.1-mini": Price(0.40, 1.60, 85, 170),
    "gpt-4.1-nano": Price(0.10, 0.40, 85, 170),
}


def load_prices(path: str | Path | None = None) -> dict[str, Price]:
    """The default table, updated from a JSON file (``path`` or $CLICKLABEL_PRICES)."""
    table = dict(DEFAULT_PRICES)
    path = path or os.environ.get("CLICKLABEL_PRICES")
    if path:
        try:
            raw = json.loads(Path(path).read_text())
            for model, p in raw.items():
                price = Price(float(p["input"]), float(p["output"]), int(p.get("image_base", 85)),
                              int(p.get("image_tile", 170)))
                if not all(math.isfinite(v) and v >= 0 for v in (price.input, price.output)):
                    raise ValueError(f"{model}: prices must be finite numbers >= 0")
                table[model] = price
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise LabelError(f"price table {path} is not valid ({exc})") from None
    return table


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    """The entry for ``model``, also for dated names such as gpt-4o-mini-2024-07-18 (longest prefix wins)."""
    if model in table:
        return table[model]
    best = max((k for k in table if model.startswith(k + "-")), key=len, default=None)
    return table[best] if best else None


def cost(model: str, prompt_tokens: int, completion_tokens: int, table: dict[str, Price]) -> float:
    p = price_for(model, table)
    if p is None:
        return 0.0
    return (prompt_tokens * p.input + completion_tokens * p.output) / 1e6


def image_tokens(model: str, width: int, height: int, detail: str, table: dict[str, Price]) -> int:
    """Tokens an image costs (OpenAI's tile rule: fit 2048, short side 768, count 512 px tiles)."""
    p = price_for(model, table) or Price(0, 0)
    if detail == "low":
        return p.image_base
    s = min(1.0, 2048 / max(width, height))
    w, h = width * s, height * s
    s = min(1.0, 768 / min(w, h))
    w, h = w * s, h * s
    return p.image_base + p.image_tile * math.ceil(w / 512) * math.ceil(h / 512)
