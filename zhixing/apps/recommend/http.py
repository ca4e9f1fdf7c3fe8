"""HTTP routes of the recommendation application, mounted by `zhixing serve --app recommend=STORE`:

    GET  /apps/recommend/                the web page (choose aspects -> ranked items with explanations)
    GET  /apps/recommend/aspects         the store's aspects (with mention counts), items and build summary
    POST /apps/recommend/rank            {"prefer": {"屏幕": 2} | ["屏幕"], "avoid": [...], "reviews": [...],
                                          "top": 5} -> {"ranked": [...], "user": {...} when reviews are given}
    GET  /apps/recommend/items/{item}    an item's profile (aspects, counts, phrases, snippets)
    GET  /apps/recommend/reviews/{id}    a cited review in full, re-read from the source files by its id

The store is read-only; the sentiment model is loaded only when a request sends the user's own reviews.
Errors come back in the server's shape ({"error": {"message", "param", ...}}) with status 400 / 404.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from zhixing.apps.recommend.profiles import Store, user_profile, weights
from zhixing.errors import ZhixingError

STATIC = Path(__file__).parent / "static"
MAX_REVIEWS, MAX_CHARS = 50, 2000  # a user's own reviews per request, characters per review


def mount(app: Any, path: str) -> None:
    """Add the routes and the page for the store at `path` to the FastAPI `app`."""
    from fastapi import Body
    from fastapi.responses import FileResponse

    from zhixing.serve.app import APIError

    store = Store(path)
    model: dict[str, Any] = {}
    lock = threading.Lock()

    def raw_reviews() -> dict[str, Any]:
        with lock:  # the source files, read once, on the first request for a review
            if "reviews" not in model:
                from zhixing.apps.recommend.reviews import read_all

                found = read_all(store.summary["sources"], store.summary.get("max_per_item"))
                model["reviews"] = {r.id: r for r in found}
            return model["reviews"]

    def sentiment():
        with lock:  # loaded once, on the first request that needs it
            if "m" not in model:
                from zhixing.apps.recommend.sentiment import ClauseSentiment

                model["m"] = ClauseSentiment(store.summary["sentiment_run"])
            return model["m"]

    def bad(e: Exception, param: str | None = None):
        return APIError(400, str(e), "invalid_request_error", param, "invalid_value")

    @app.get("/apps/recommend/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/apps/recommend/app.js", include_in_schema=False)
    async def script():
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/apps/recommend/aspects")
    def aspects():
        counts: dict[str, int] = {}
        for (_, a), (pos, neg) in store._counts.items():
            counts[a] = counts.get(a, 0) + pos + neg
        return {
            "aspects": [
                {"aspect": a, "mentions": counts[a]} for a in sorted(counts, key=lambda a: -counts[a])
            ],
            "items": [
                {"item": i, "reviews": n, "reviews_with_aspects": m} for i, (n, m) in store.items.items()
            ],
            "summary": {
                k: store.summary[k] for k in ("reviews", "items", "aspects", "mentions", "review_coverage")
            },
        }

    @app.post("/apps/recommend/rank")
    def rank(body: dict = Body(...)):  # noqa: B008 (FastAPI's way of taking a JSON object)
        unknown = set(body) - {"prefer", "avoid", "reviews", "top"}
        if unknown:
            raise bad(ValueError(f"unknown field(s) {sorted(unknown)}; expected prefer, avoid, reviews, top"))
        top = body.get("top", 5)
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
            raise bad(ValueError(f"top: {top!r}; expected an integer in 1..100"), "top")
        try:
            prefer, avoid = (
                weights(body.get("prefer") or {}, "prefer"),
                weights(body.get("avoid") or {}, "avoid"),
            )
        except (ZhixingError, AttributeError, TypeError) as e:
            raise bad(e) from None
        user = None
        reviews = body.get("reviews") or []
        if reviews:
            if (
                not isinstance(reviews, list)
                or len(reviews) > MAX_REVIEWS
                or any(not isinstance(t, str) or len(t) > MAX_CHARS for t in reviews)
            ):
                raise bad(
                    ValueError(
                        f"reviews: expected a list of at most {MAX_REVIEWS} texts of at most "
                        f"{MAX_CHARS} characters"
                    ),
                    "reviews",
                )
            try:
                user = user_profile(reviews, store, sentiment())
            except ZhixingError as e:
                raise bad(e, "reviews") from None
            prefer = {**user["prefer"], **prefer}
        try:
            ranked = store.rank(prefer, avoid, top=top)
        except ZhixingError as e:
            raise bad(e, "prefer") from None
        return {"ranked": [r.to_dict() for r in ranked], "prefer": prefer, "avoid": avoid, "user": user}

    @app.get("/apps/recommend/items/{item}")
    def item_profile(item: str, top: int = 12):
        if item not in store.items:
            raise APIError(
                404,
                f"no item {item!r}; items: {', '.join(store.items)}",
                "not_found_error",
                "item",
                "item_not_found",
            )
        return store.profile(item, top=max(1, min(top, 100)))

    @app.get("/apps/recommend/reviews/{review_id}")
    def review(review_id: str):
        try:
            found = raw_reviews().get(review_id)
        except (OSError, ZhixingError) as e:
            raise APIError(
                404, f"the review files of the store cannot be read: {e}", "not_found_error"
            ) from None
        if found is None:
            raise APIError(
                404,
                f"no review {review_id!r} in the store's sources",
                "not_found_error",
                "review_id",
                "review_not_found",
            )
        return {"id": found.id, "item": found.item, "label": found.label, "text": found.text}
