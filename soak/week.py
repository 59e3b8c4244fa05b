"""A week in a minute: a long-lived crawler against FakeArcGIS for simulated days.

One `ArchieClient` with one `UserTokenAuth` crawls a secured layer every quarter of an
hour, for days of virtual time (Trio's autojump clock, or archibald's asyncio one), while
the emulator misbehaves at random: token endpoint 503 bursts and outages longer than a
token's life, every token revoked at once (a server restart), 429 with Retry-After, slow
pages, dropped connections, pages capped below the advertised size, and features added
and deleted between crawls. At the end it reports what a user would ask: crawls
completed, features lost or duplicated (0, or the soak failed), errors by type (each one
expected), token fetches against the fewest needed, and tasks and memory at the end
against the start (live Python objects, counted after a collection).

    python -m soak.week            # a week, both backends, written to soak/latest.md
"""

from __future__ import annotations

import collections
import gc
import random
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import attrs

from archibald import (
    ArchieClient,
    ArchieError,
    FeatureLayer,
    IncompleteResultError,
    NetworkError,
    ServiceError,
    TokenPolicy,
    TokenRefreshError,
    UserTokenAuth,
)
from archibald.testing import FakeArcGIS

USER, PASSWORD = "soak", "soak-password"
EVERY = 15 * 60.0  # seconds between crawls
EXPECTED_ERRORS = (TokenRefreshError, NetworkError, ServiceError, IncompleteResultError)
FAULTS = ("503 burst", "token outage", "revoke all", "429", "slow pages", "drops", "page cap")


@attrs.define
class Figures:
    """What a soak run found."""

    days: float
    token_minutes: float
    crawls: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    unexpected: list[str] = attrs.Factory(list)
    examples: dict[str, str] = attrs.Factory(dict)  # the first message of each error type
    faults: collections.Counter[str] = attrs.Factory(collections.Counter)
    tokens: int = 0  # tokens obtained
    tokens_needed: int = 0  # the fewest: one per lifetime, plus one after each revocation
    failed_fetches: int = 0  # token requests that failed (outages, 503 bursts)
    tasks_before: int = 0
    tasks_after: int = 0
    objects_before: int = 0
    objects_after: int = 0
    seconds: float = 0.0


def _fault(fake: FakeArcGIS, rng: random.Random) -> str | None:
    """Switch one fault on for the coming crawl (or none); return its name."""
    fake.faults.clear()
    if rng.random() < 0.4:
        return None
    fault = rng.choice(FAULTS)
    if fault == "503 burst":
        fake.faults.fail_next("generateToken", status=503, times=rng.randint(1, 4))
        fake.faults.fail_next("query", status=503, times=rng.randint(1, 3))
    elif fault == "token outage":  # its length is the caller's: it may outlast crawls
        pass
    elif fault == "revoke all":
        fake.revoke_all_tokens()
    elif fault == "429":
        fake.faults.fail_next("query", status=429, times=rng.randint(1, 3), retry_after=2.0)
    elif fault == "slow pages":
        fake.faults.latency["query"] = rng.uniform(0.5, 5.0)
    elif fault == "drops":
        fake.faults.drop_next("query", times=rng.randint(1, 3))
    else:
        fake.faults.page_cap = rng.choice((50, 120, 333))
    return fault


async def _crawl(layer: FeatureLayer, fake: FakeArcGIS, figures: Figures) -> None:
    """One crawl: every feature once (counted), or an expected error (counted by type)."""
    figures.crawls += 1
    expected = collections.Counter(fake.layer("Soak").object_ids)
    seen: collections.Counter[int] = collections.Counter()
    try:
        async with layer.pages() as pages:
            async for page in pages:
                seen.update(page.object_ids)
    except ArchieError as exc:
        name = type(exc).__name__
        figures.errors[name] += 1
        figures.examples.setdefault(name, str(exc))
        if not isinstance(exc, EXPECTED_ERRORS):
            figures.unexpected.append(f"{name}: {exc}")
        return
    figures.completed += 1
    figures.duplicated += sum(n - 1 for n in seen.values() if n > 1)
    figures.lost += len(expected.keys() - seen.keys())


def _edit(fake: FakeArcGIS, rng: random.Random) -> None:
    """Between crawls, as users do: a few features added, a few deleted."""
    layer = fake.layer("Soak")
    ids = layer.object_ids
    deletes = rng.sample(ids, min(len(ids), rng.randint(0, 5)))
    adds = [
        {"attributes": {"NAME": f"added {rng.random():.6f}", "POPULATION": 1}, "geometry": None}
        for _ in range(rng.randint(0, 5))
    ]
    layer.apply_edits(adds, [], deletes, rollback_on_failure=True, rng=rng)


async def simulate(days: float, token_minutes: float, seed: int = 0) -> Figures:
    """Crawl for *days* of virtual time with *token_minutes* tokens; the figures."""
    rng = random.Random(seed)
    figures = Figures(days=days, token_minutes=token_minutes)
    fake = FakeArcGIS(max_token_minutes=token_minutes, seed=seed)
    fake.add_user(USER, PASSWORD)
    fake.add_feature_layer("Soak", count=600, max_record_count=100, secured=True)
    token_seconds = token_minutes * 60
    policy = TokenPolicy(renew_before=min(300.0, token_seconds / 4))
    auth = UserTokenAuth(
        USER,
        PASSWORD,
        fake.portal_url,
        expiration=max(1, round(token_minutes)),
        policy=policy,
        http_client=fake.client(),
    )
    figures.tasks_before = len(anyio.get_running_tasks())
    started, real_start = anyio.current_time(), time.perf_counter()
    async with ArchieClient(fake.services_url, auth, transport=fake.transport()) as client:
        layer = FeatureLayer(client, "Soak", 0)
        outage_until = 0.0
        while (now := anyio.current_time()) - started < days * 86_400:
            fault = _fault(fake, rng)
            if fault is not None:
                figures.faults[fault] += 1
            if fault == "token outage":  # half a token's life to two (four hours at most)
                outage_until = now + min(rng.uniform(0.5, 2.0) * token_seconds, 4 * 3600)
            fake.faults.token_outage = now < outage_until
            await _crawl(layer, fake, figures)
            _edit(fake, rng)
            if figures.crawls == 1:  # the steady state: the client and a crawl warmed up
                gc.collect()
                figures.objects_before = len(gc.get_objects())
            await anyio.sleep(EVERY)
        tokens = auth.statistics()
        figures.tokens = tokens.fetches - tokens.failures
        figures.failed_fetches = tokens.failures
        gc.collect()
        figures.objects_after = len(gc.get_objects())  # the client still open, as before
    figures.tasks_after = len(anyio.get_running_tasks())
    lifetime = token_seconds - policy.renew_before
    renewals = int(days * 86_400 // max(lifetime, token_seconds / 2))
    figures.tokens_needed = 1 + renewals + figures.faults["revoke all"]
    figures.seconds = time.perf_counter() - real_start
    return figures


def report(runs: list[tuple[str, Figures]]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| backend | days | token life | crawls | completed | lost | duplicated | errors "
        "(all expected) | faults injected | tokens obtained (at most needed), failed requests "
        "| tasks before / after "
        "| objects after the first crawl / at the end | real seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, f in runs:
        errors = ", ".join(f"{name} {n}" for name, n in sorted(f.errors.items())) or "none"
        if f.unexpected:
            errors += f"; **unexpected: {len(f.unexpected)}**"
        faults = ", ".join(f"{name} {n}" for name, n in sorted(f.faults.items()))
        lines.append(
            f"| {backend} | {f.days:g} | {f.token_minutes:g} min | {f.crawls} | {f.completed} "
            f"| {f.lost} | {f.duplicated} | {errors} | {faults} | {f.tokens} "
            f"({f.tokens_needed}), {f.failed_fetches} | {f.tasks_before} / {f.tasks_after} "
            f"| {f.objects_before:,} / {f.objects_after:,} | {f.seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from trio.testing import MockClock

    from archibald.testing import AutojumpEventLoop

    days = float(argv[0]) if argv else 7.0
    runs: list[tuple[str, Figures]] = []
    for token_minutes in (60.0, 2.0):
        trio_run: Any = anyio.run(
            simulate, days, token_minutes, backend="trio",
            backend_options={"clock": MockClock(autojump_threshold=0)},
        )  # fmt: skip
        runs.append(("trio", trio_run))
        asyncio_run: Any = anyio.run(
            simulate, days, token_minutes, backend="asyncio",
            backend_options={"loop_factory": AutojumpEventLoop},
        )  # fmt: skip
        runs.append(("asyncio", asyncio_run))
    text = report(runs)
    print(text)
    out = Path(__file__).with_name("latest.md")
    out.write_text(
        f"Soak run of {time.strftime('%Y-%m-%d %H:%M %Z')}: `python -m soak.week {days:g}`\n\n"
        + text
        + "\n",
        encoding="utf-8",
    )
    failed = [f for _, f in runs if f.lost or f.duplicated or f.unexpected]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
