"""The one JSON encoder: request bodies, STATE lines, the usage file and JSON Lines files."""

from __future__ import annotations

import msgspec

encode_json = msgspec.json.Encoder(decimal_format="number").encode
"""Compact JSON bytes, Decimal values written as numbers with all their digits."""
