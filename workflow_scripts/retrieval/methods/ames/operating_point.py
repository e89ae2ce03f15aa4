"""The fixed operating point of AMES's fusion (``ames.select: fixed``), per model. Light (no torch): the plan hashes
it into ``evaluate_ames``'s version and the stage reports it as ``chosen``."""

from __future__ import annotations

from typing import Any


def fixed_point(fixed: dict[str, Any], method: str) -> dict[str, Any]:
    """``ames.fixed`` as ``method`` uses it: ``lambda``, ``gamma``, ``num_rerank`` (and ``geometry_weight`` where
    given), for ``ames_binary`` with ``lambda`` / ``gamma`` of ``fixed["binary"]`` where given. AMES publishes one
    point per model (its README: DINOv2 0.50 / 0.20, its binary student 0.35 / 0.10). Without ``binary`` both models
    get ``fixed`` as it is, so the versions of such a configuration hash the same dict as before the key existed."""
    point = {k: v for k, v in fixed.items() if k != "binary"}
    if method == "ames_binary":
        point.update(fixed.get("binary") or {})
    return point
