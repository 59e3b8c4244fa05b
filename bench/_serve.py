"""Serve FakeArcGIS on loopback in its own process, for the benchmarks.

The benchmarked client and the server run in separate processes, so that the client's
CPU time is its own. The server prints its origin on the first line of standard output,
then serves until it is terminated. Besides the emulator, it answers three control
requests (POST): ``/_bench/revoke`` (every token is revoked at once), ``/_bench/reset``
(counters back to zero), ``/_bench/stats`` (the counters, and the wall-clock times at
which tokens were issued since the last reset, as JSON) and ``/_bench/edit?layer=NAME&
fraction=F`` (edits a fraction F of a layer's features as a day of editing would: a third
of them updated, a third deleted, as many added; seeded, so every run edits alike).

With ``"warm": true`` it encodes every feature of its open layers in both formats the
crawlers ask for before it prints its origin, so that no crawler pays for that.

    python bench/_serve.py '{"layers": {"Bench": 200000}, "token_seconds": 70}'

Settings (a JSON object; every key may be left out):

- ``layers``: layer name -> feature count, generated up front, in secured services;
- ``open_layers``: the same, in services open to everyone;
- ``lazy_layers``: layer name -> feature count, generated lazily (each feature made when
  a query reads it: millions cost a few megabytes), in secured services;
- ``open_lazy_layers``: the same, in services open to everyone;
- ``page``: every layer's maxRecordCount (default 2000);
- ``id_list_limit``, ``id_list_failure``: applied to every layer: the most ids a
  ``returnIdsOnly`` query may match, and what it gets beyond that (``"error"``,
  ``"timeout"`` or ``"truncate"``; see `FakeLayer`);
- ``tracked_layers``: layer name -> feature count, open to everyone, with change tracking
  (``extractChanges``) and editor tracking (edit dates), for ``archibald sync``;
- ``token_seconds``: the longest token lifetime (default 3600);
- ``token_latency``, ``query_latency``: seconds each token request or query waits.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from typing import Any

import trio
from workloads._common import raise_fd_limit  # bench/ is this script's folder

from archibald.testing import FakeArcGIS
from archibald.testing._wire import Request, Response

USER, PASSWORD = "bench", "bench-password"


class BenchFake(FakeArcGIS):
    """FakeArcGIS plus the control requests a benchmark needs across processes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_times: list[float] = []  # time.time() as each token went out
        self.edit_days = 0  # days of edits made by edit_some

    async def respond(self, request: Request) -> Response:
        if not request.path.startswith("/_bench/"):
            response = await super().respond(request)
            if request.path.endswith("/generateToken") and b'"token"' in response.body:
                self.token_times.append(time.time())
            return response
        action = request.path.removeprefix("/_bench/")
        if action == "revoke":
            self.revoke_all_tokens()
        elif action == "reset":
            self.reset_statistics()
            self.token_times.clear()
        elif action == "edit":
            self.edit_some(request.params["layer"], float(request.params["fraction"]))
        elif action != "stats":
            return Response(404, b"unknown control request", {"content-type": "text/plain"})
        stats = self.statistics()
        body = {
            "requests": dict(stats.requests),
            "tokens_issued": stats.tokens_issued,
            "rejected_498": stats.rejected_498,
            "rejected_499": stats.rejected_499,
            "token_times": self.token_times,
        }
        return Response(200, json.dumps(body).encode(), {"content-type": "application/json"})

    def edit_some(self, name: str, fraction: float) -> None:
        """Update, delete and add a fraction of the layer's features (a third each), as a
        day of editing: each call's edits are dated a day after the last call's."""
        self.edit_days += 1
        layer = self.layer(name)
        rng = random.Random(len(layer.object_ids))
        ids = layer.object_ids
        each = max(1, round(len(ids) * fraction / 3))
        chosen = rng.sample(ids, min(len(ids), 2 * each))
        template = layer.features[0]
        self.edit(
            layer,
            updates=[{"attributes": {"OBJECTID": oid, "NAME": "edited"}} for oid in chosen[:each]],
            deletes=chosen[each:],
            adds=[{"attributes": {"NAME": "added"}, "geometry": template.get("geometry")}] * each,
            at_ms=self.now_ms() + self.edit_days * 86_400_000,
        )


def build(settings: dict[str, Any]) -> BenchFake:
    """The emulator that *settings* describe (see the keys above)."""
    fake = BenchFake(max_token_minutes=settings.get("token_seconds", 3600) / 60)
    fake.add_user(USER, PASSWORD)
    page = settings.get("page", 2000)
    for name, count in settings.get("layers", {}).items():
        fake.add_feature_layer(name, count=count, max_record_count=page, secured=True)
    for name, count in settings.get("open_layers", {}).items():
        fake.add_feature_layer(name, count=count, max_record_count=page)
    for name, count in settings.get("tracked_layers", {}).items():
        fake.add_feature_layer(
            name, count=count, max_record_count=page, change_tracking=True, editor_tracking=True
        )
    for name, count in settings.get("lazy_layers", {}).items():
        fake.add_feature_layer(name, count=count, max_record_count=page, secured=True, lazy=True)
    for name, count in settings.get("open_lazy_layers", {}).items():
        fake.add_feature_layer(name, count=count, max_record_count=page, lazy=True)
    for service in fake.services.values():
        for layer in service.layers.values():
            layer.id_list_limit = settings.get("id_list_limit")
            layer.id_list_failure = settings.get("id_list_failure", "error")
    fake.faults.latency.update(
        {
            "generateToken": settings.get("token_latency", 0.0),
            "query": settings.get("query_latency", 0.0),
        }
    )
    return fake


async def warm(fake: BenchFake, settings: dict[str, Any]) -> None:
    """Ask every page of the open layers once in Esri JSON and once in GeoJSON, in
    process: the emulator keeps each feature as it encoded it, for every later crawl."""
    page = settings.get("page", 2000)
    async with fake.client() as http:
        for name, count in settings.get("open_layers", {}).items():
            url = f"{fake.origin}/arcgis/rest/services/{name}/FeatureServer/0/query"
            for fmt in ("json", "geojson"):
                for offset in range(0, count, page):
                    params = {
                        "where": "1=1",
                        "outFields": "*",
                        "resultOffset": offset,
                        "resultRecordCount": page,
                        "f": fmt,
                    }
                    answer = await http.get(url, params=params)
                    answer.raise_for_status()


async def main(settings: dict[str, Any]) -> None:
    raise_fd_limit()
    fake = build(settings)
    if settings.get("warm"):
        await warm(fake, settings)
    async with fake.serve() as origin:
        print(origin, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, json.loads(sys.argv[1]))
