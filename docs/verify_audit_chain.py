#!/usr/bin/env python3
"""Verify the Izin Siaran audit chain through its API, trusting only this file.

Needs Python 3 and one library, an RFC 8785 canonicaliser (`pip install rfc8785`).
Usage:

    IZIN_SIARAN_TOKEN=<auditor's bearer token> python3 verify_audit_chain.py https://izin-siaran.example

Prints the number of events and the head hash; compare the head with one you
kept earlier (`izin-siaran audit head`). Exit status 0: the chain is intact;
1: it is broken, and the first bad `seq` is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import rfc8785


def pages(base_url: str, token: str) -> Iterator[list[dict[str, Any]]]:
    cursor = None
    while True:
        query = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        url = f"{base_url.rstrip('/')}/api/v1/audit/events?{urllib.parse.urlencode(query)}"
        if not url.startswith(("http://", "https://")):
            raise SystemExit("the service URL must start with http:// or https://")
        headers = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 (checked above)
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            page = json.load(response)
        yield page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return


def main() -> int:
    base_url, token = sys.argv[1], os.environ["IZIN_SIARAN_TOKEN"]
    previous, count = "0" * 64, 0
    for items in pages(base_url, token):
        for event in items:
            count += 1
            body = {key: value for key, value in event.items() if key != "hash"}
            digest = hashlib.sha256(rfc8785.dumps(body)).hexdigest()
            problem = (
                f"expected seq {count}"
                if event["seq"] != count
                else "prev_hash does not link to the previous event"
                if event["prev_hash"] != previous
                else "hash does not match the content"
                if digest != event["hash"]
                else None
            )
            if problem:
                print(json.dumps({"valid": False, "seq": count, "reason": problem}))
                return 1
            previous = event["hash"]
    print(json.dumps({"valid": True, "count": count, "head": previous}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
