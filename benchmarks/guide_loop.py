"""Monk's bulk-ingestion guide's sequential loop, fed from a Singer file: the other baseline.

Usage: python guide_loop.py SINGER_FILE API_URL API_KEY
It maps records the way the guide does (no validation), posts 5,000 events per call
with `requests.post(json=...)`, one call at a time, and retries a 429 once.
"""

from __future__ import annotations

import json
import sys
import time

import requests

BATCH_SIZE = 5000


def chunk(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def main() -> None:
    path, api_url, api_key = sys.argv[1:4]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    url = api_url.rstrip("/") + "/v1/events/batch"
    with open(path) as lines:
        records = [m["record"] for m in map(json.loads, lines) if m["type"] == "RECORD"]
    failed = 0
    for batch in chunk(records, BATCH_SIZE):
        payload = {
            "events": [
                {
                    "externalCustomerId": e["external_customer_id"],
                    "eventName": e["event_name"],
                    "timestamp": e["timestamp"],
                    "idempotencyKey": f"sync_{e['id']}",
                    "properties": {"region": e["region"], "model": e["model"]},
                }
                for e in batch
            ]
        }
        resp = requests.post(url, json=payload, headers=headers, timeout=60)
        if resp.status_code == 429:
            time.sleep(5)
            resp = requests.post(url, json=payload, headers=headers, timeout=60)
        if resp.status_code != 202:
            failed += 1
    if failed:
        raise SystemExit(f"{failed} batches failed")


if __name__ == "__main__":
    main()
