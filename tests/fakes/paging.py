"""Page-number paging as GitHub, Gitea and GitLab do it: ?page=&per_page=, with a Link header."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode


def page_of(
    items: Sequence[Any], base_url: str, args: Mapping[str, str], per_page: int, size_param: str = "per_page"
) -> tuple[list[Any], dict[str, str]]:
    """One page of `items` and the headers that describe the others (RFC 8288 Link, GitLab's x-*)."""
    page = max(1, int(args.get("page", "1") or 1))
    size = min(per_page, int(args.get(size_param, str(per_page)) or per_page))
    last = max(1, -(-len(items) // size))
    chosen = list(items[(page - 1) * size : page * size])

    def link(number: int) -> str:
        query = {key: value for key, value in args.items() if key not in ("page",)}
        query["page"] = str(number)
        return f"{base_url}?{urlencode(query)}"

    links = []
    if page < last:
        links += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
    if page > 1:
        links += [f'<{link(1)}>; rel="first"', f'<{link(page - 1)}>; rel="prev"']
    headers = {
        "x-page": str(page),
        "x-per-page": str(size),
        "x-total": str(len(items)),
        "x-total-pages": str(last),
        "x-next-page": str(page + 1) if page < last else "",
    }
    if links:
        headers["Link"] = ", ".join(links)
    return chosen, headers
