"""CivitAI images API client: cursor paging, backoff on 429/5xx, resumable through a cache file.

Endpoint `GET {base_url}/images?limit=&cursor=&nsfw=&sort=` answers
`{"items": [{"id", "meta": {"prompt", "negativePrompt", ...}}], "metadata": {"nextCursor", "nextPage"}}`.
The API key, if any, comes from the environment variable CIVITAI_API_KEY (sent as a Bearer token).

The cache is JSON Lines, one line per fetched page: {"cursor", "next_cursor", "items"}. A rerun reads
it and continues from the last `next_cursor`; a half-written last line (interrupted run) is ignored.

A malformed page (not JSON, or without an "items" list) is retried like a 5xx, since proxies
truncate pages; if it is still malformed after the retries the fetch fails with CivitaiError.
It cannot be skipped: its next cursor is unreadable, so paging could not go on.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from tqdm import tqdm

from flowrl.errors import FlowRLError
from flowrl.io import write_text

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://civitai.com/api/v1"
API_KEY_ENV = "CIVITAI_API_KEY"


class CivitaiError(FlowRLError):
    """The CivitAI API refused, kept failing, or sent pages that cannot be read."""


@dataclass
class FetchResult:
    """Prompt rows fetched (cached pages included) and what it took."""

    rows: list[dict]
    n_pages: int
    n_pages_cached: int
    n_retries: int
    n_items_without_prompt: int
    exhausted: bool  # the API said there are no more pages


@dataclass
class CivitaiClient:
    """Fetches image prompts page by page.

    Args:
        base_url: API root (tests point it at a loopback server).
        page_size: `limit` per request (the API allows up to 200).
        nsfw: `nsfw` filter sent to the API ("None" asks for safe images only).
        sort: `sort` order, e.g. "Most Reactions".
        max_retries: retries per page on 429, 5xx, network errors and malformed pages.
        backoff_s: base of the exponential backoff (base * 2**attempt, plus up to 100% jitter).
        timeout_s: per-request timeout.
        seed: seeds the jitter.
        sleep: injected for tests.
    """

    base_url: str = DEFAULT_BASE_URL
    page_size: int = 100
    nsfw: str = "None"
    sort: str = "Most Reactions"
    max_retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    seed: int = 0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.n_retries = 0
        headers = {"Accept": "application/json"}
        key = os.environ.get(API_KEY_ENV)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(headers=headers, timeout=self.timeout_s, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def _wait(self, attempt: int, retry_after: str | None = None) -> None:
        if retry_after is not None:
            try:
                self.sleep(max(0.0, float(retry_after)))
                return
            except ValueError:
                pass  # an HTTP date: fall back to backoff
        self.sleep(self.backoff_s * 2**attempt * (1 + self._rng.random()))

    def fetch_page(self, cursor: str | None) -> dict:
        """One page as parsed JSON, retrying transient failures; raises CivitaiError when out of retries."""
        url = f"{self.base_url.rstrip('/')}/images"
        params = {"limit": self.page_size, "nsfw": self.nsfw, "sort": self.sort}
        if cursor is not None:
            params["cursor"] = cursor
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.n_retries += 1
            retry_after = None
            try:
                response = self._http.get(url, params=params)
            except httpx.HTTPError as exc:
                last = f"network error ({exc})"
            else:
                status = response.status_code
                if status == 429:
                    last, retry_after = "HTTP 429 (rate limited)", response.headers.get("Retry-After")
                elif status >= 500:
                    last = f"HTTP {status}"
                elif status in (401, 403):
                    raise CivitaiError(f"{url}: HTTP {status}; set {API_KEY_ENV} to a valid CivitAI API key")
                elif status >= 400:
                    raise CivitaiError(
                        f"{url} (cursor {cursor!r}): HTTP {status} {response.text[:200]!r}; check prompts.civitai_* settings"
                    )
                else:
                    try:
                        page = response.json()
                    except ValueError as exc:
                        last = f"page is not valid JSON ({exc})"
                    else:
                        if isinstance(page, dict) and isinstance(page.get("items"), list):
                            return page
                        last = "page has no 'items' list"
            if attempt < self.max_retries:
                log.warning("%s (cursor %r): %s; retry %d/%d", url, cursor, last, attempt + 1, self.max_retries)
                self._wait(attempt, retry_after)
        raise CivitaiError(
            f"{url} (cursor {cursor!r}): {last} after {self.max_retries} retries; "
            "try again later (the cache keeps the pages already fetched) or raise prompts.civitai_max_retries"
        )


def next_cursor(page: dict) -> str | None:
    """The cursor of the following page: metadata.nextCursor, else the `cursor` in metadata.nextPage."""
    meta = page.get("metadata") or {}
    if meta.get("nextCursor") not in (None, ""):
        return str(meta["nextCursor"])
    if meta.get("nextPage"):
        values = parse_qs(urlparse(str(meta["nextPage"])).query).get("cursor")
        if values:
            return values[0]
    return None


def item_to_row(item: dict) -> dict | None:
    """A prompt row from an API item, or None when it carries no prompt."""
    meta = item.get("meta") if isinstance(item, dict) else None
    prompt = meta.get("prompt") if isinstance(meta, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    negative = meta.get("negativePrompt")
    return {
        "prompt": prompt,
        "negative_prompt": negative if isinstance(negative, str) and negative.strip() else None,
        "source": f"civitai:image-{item.get('id')}",
    }


def _read_cache(path: Path) -> list[dict]:
    """Cached pages; a truncated last line from an interrupted run is dropped (and rewritten next time)."""
    if not path.exists():
        return []
    pages = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            page = json.loads(line)
            if not isinstance(page.get("items"), list):
                raise ValueError("no items")
        except (ValueError, AttributeError):
            log.warning("%s:%d: unreadable cache line ignored (interrupted run?); refetching from there", path, lineno)
            break
        pages.append(page)
    return pages


def fetch_prompts(
    client: CivitaiClient, max_items: int, max_pages: int, cache_path: str | Path | None = None
) -> FetchResult:
    """Page through the API until `max_items` prompt rows, `max_pages` pages, or the last page.

    Pages already in `cache_path` are reused (not refetched); new pages are appended to it.
    """
    cache = Path(cache_path) if cache_path else None
    pages = _read_cache(cache) if cache else []
    if cache is not None:
        # Rewrite the readable part, so a torn last line never sits in the middle of the file.
        write_text(cache, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pages))
    n_cached = len(pages)
    rows: list[dict] = []
    n_without = 0

    def take(items: list) -> None:
        nonlocal n_without
        for item in items:
            row = item_to_row(item)
            if row is None:
                n_without += 1
            else:
                rows.append(row)

    for page in pages:
        take(page["items"])
    cursor = pages[-1]["next_cursor"] if pages else None
    exhausted = bool(pages) and cursor is None
    with tqdm(total=max_pages, initial=min(len(pages), max_pages), desc="civitai pages", unit="page") as bar:
        while not exhausted and len(rows) < max_items and len(pages) < max_pages:
            page = client.fetch_page(cursor)
            record = {"cursor": cursor, "next_cursor": next_cursor(page), "items": page["items"]}
            if cache is not None:
                with cache.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            pages.append(record)
            take(page["items"])
            cursor = record["next_cursor"]
            exhausted = cursor is None or not page["items"]
            bar.update()
    return FetchResult(
        rows=rows[:max_items],
        n_pages=len(pages),
        n_pages_cached=n_cached,
        n_retries=client.n_retries,
        n_items_without_prompt=n_without,
        exhausted=exhausted,
    )
