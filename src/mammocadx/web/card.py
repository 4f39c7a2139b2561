"""What the page and the case report say about the model: its identity, and the notice shown with every result."""
from __future__ import annotations

from typing import Any

NOTICE = (
    "Research use only. Not a medical device: not cleared or approved for clinical diagnosis. "
    "The score is a classifier's decision value, not a probability of cancer."
)


def card_id(card: dict[str, Any]) -> dict[str, Any]:
    """What identifies the model in a case report: id, version, creation time, file hashes, training fingerprint.

    Cards name these in a few ways (``name``/``id``, ``created``/``created_utc``,
    ``software.mammocadx``/``mammocadx_version``); the SHA-256 of the model files,
    when the card has them, pins the exact model.
    """
    ident = card.get("id") or card.get("model_id") or card.get("name")
    version = card.get("version") or card.get("model_version")
    out: dict[str, Any] = {"id": str(ident) if ident is not None else None,
                           "version": str(version) if version is not None else None}
    created = card.get("created") or card.get("created_utc")
    if created:
        out["created"] = created
    software = card.get("software") if isinstance(card.get("software"), dict) else {}
    made_with = software.get("mammocadx") or card.get("mammocadx_version")
    if made_with:
        out["made_with"] = f"mammocadx {made_with}"
    if isinstance(card.get("files"), dict):
        out["files_sha256"] = card["files"]
    for key in ("training", "training_data"):
        section = card.get(key)
        if isinstance(section, dict) and section.get("fingerprint"):
            out["training_fingerprint"] = section["fingerprint"]
            break
    return out
