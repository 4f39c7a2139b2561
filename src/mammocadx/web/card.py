"""What the page and the case report say about the model: its identity, and the notice shown with every result."""
from __future__ import annotations

import re
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


#: Card keys never served to the page: the training command line names local files and folders.
PRIVATE_KEYS = frozenset({"command", "argv", "cwd", "cache_dir", "data_dir", "model_dir", "output", "paths"})
_LOCAL_PATH = re.compile(r"""(?:^|[\s'"=(])(?:~|[A-Za-z]:\\|/)[^\s'"]*[/\\]""")


def public_card(card: Any) -> Any:
    """The model card as served to the page: without command lines or local file paths.

    Keys in :data:`PRIVATE_KEYS` are dropped; any other string that holds a
    local path has the path replaced.
    """
    if isinstance(card, dict):
        return {k: public_card(v) for k, v in card.items() if str(k).lower() not in PRIVATE_KEYS}
    if isinstance(card, list):
        return [public_card(v) for v in card]
    if isinstance(card, str) and _LOCAL_PATH.search(card):
        return re.sub(r"""(?:~|[A-Za-z]:\\|(?<![\w.])/)[^\s'"]*[/\\][^\s'",;)]*""", "(local path)", card)
    return card


def validated_performance(card: dict[str, Any]) -> dict[str, Any] | None:
    """The model's validated performance from its card (``metrics``: protocol, AUC and its CI ...), if any."""
    metrics = card.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return None
    return public_card(metrics)
