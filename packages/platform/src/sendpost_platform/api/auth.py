"""Authentication dependencies for the three kinds of API key.

- ``AccountDep``: ``X-Account-ApiKey`` → :class:`~sendpost_platform.store.accounts.Account`
  (manage providers, pools, domains; read events).
- ``SubAccountDep``: ``X-SubAccount-ApiKey`` → :class:`~sendpost_platform.store.accounts.SubAccount`
  (send).
- ``IngestKeyHeader`` + :func:`require_ingest_key`: ``X-SP-Event-ApiKey`` →
  :class:`IngestPrincipal` (the provider whose current key, or rotated key still in its grace
  period, was given; deleted providers' keys fail). Awaited inside the ingestion route (no
  thread hop) and served from :class:`IngestKeyCache`.

Each answers 401 (``Unauthorized``) when the header is missing or the key unknown, and 429 before
any look-up for a client address with too many recent failures (``throttle.py``). Use them as
route parameters: ``def route(account: AccountDep) -> ...``. The headers are declared as
security schemes, so they appear in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from sendpost_platform import keys
from sendpost_platform.api import throttle
from sendpost_platform.api.deps import AppContext, ContextDep
from sendpost_platform.clock import Clock
from sendpost_platform.errors import Unauthorized
from sendpost_platform.store import Store, accounts
from sendpost_platform.store import ingest as ingest_store
from sendpost_platform.store import providers as provider_store

ACCOUNT_HEADER = "X-Account-ApiKey"
SUBACCOUNT_HEADER = "X-SubAccount-ApiKey"
INGEST_HEADER = "X-SP-Event-ApiKey"

_account_key = APIKeyHeader(name=ACCOUNT_HEADER, auto_error=False, scheme_name="AccountApiKey")
_subaccount_key = APIKeyHeader(
    name=SUBACCOUNT_HEADER, auto_error=False, scheme_name="SubAccountApiKey"
)
_ingest_key = APIKeyHeader(name=INGEST_HEADER, auto_error=False, scheme_name="EventIngestionApiKey")


@dataclasses.dataclass(frozen=True, slots=True)
class IngestPrincipal:
    provider_id: int
    key_hash: str


def _missing(header: str) -> Unauthorized:
    return Unauthorized(f"missing {header} header")


def require_account(
    request: Request, ctx: ContextDep, key: Annotated[str | None, Security(_account_key)]
) -> accounts.Account:
    if not key:
        raise _missing(ACCOUNT_HEADER)
    throttle.check(ctx, request)
    with ctx.store.read() as conn:
        account = accounts.account_by_key(conn, key)
    if account is None:
        throttle.failed(ctx, request)
        raise Unauthorized(f"invalid {ACCOUNT_HEADER}")
    return account


def require_subaccount(
    request: Request, ctx: ContextDep, key: Annotated[str | None, Security(_subaccount_key)]
) -> accounts.SubAccount:
    if not key:
        raise _missing(SUBACCOUNT_HEADER)
    throttle.check(ctx, request)
    with ctx.store.read() as conn:
        sub = accounts.subaccount_by_key(conn, key)
    if sub is None:
        throttle.failed(ctx, request)
        raise Unauthorized(f"invalid {SUBACCOUNT_HEADER}")
    return sub


class IngestKeyCache:
    """Ingestion keys recently found valid, so the hot path skips the database.

    An entry (key hash → provider, key expiry) is trusted for :data:`INGEST_KEY_CACHE_SECONDS`
    by the app's clock; the key's own expiry (rotation grace) is checked on every request.
    Deleting a provider or rotating its key through this process's API calls
    :meth:`invalidate`, so the change applies here at once; other API processes notice it
    within :data:`INGEST_KEY_CACHE_SECONDS`. Unknown keys are never cached (a new key works at
    once), and the cache is emptied when it reaches :data:`MAX_ENTRIES`.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._entries: dict[str, tuple[ingest_store.KeyGrant, dt.datetime]] = {}
        self.lookups = 0
        """Database look-ups made (for tests)."""

    async def principal(self, key: str) -> IngestPrincipal | None:
        """The provider ``key`` currently works for, or None."""
        key_hash = keys.hash_key(key)
        now = self.clock.now()
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] <= now:
            grant = await asyncio.to_thread(self._load, key_hash)
            if grant is None:
                self._entries.pop(key_hash, None)
                return None
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            entry = self._entries[key_hash] = (grant, now + _CACHE_FOR)
        grant = entry[0]
        if grant.expires_at is not None and grant.expires_at <= now:
            return None
        return IngestPrincipal(grant.provider_id, key_hash)

    def invalidate(self) -> None:
        """Forget every entry (a key was revoked or rotated)."""
        self._entries.clear()

    def _load(self, key_hash: str) -> ingest_store.KeyGrant | None:
        self.lookups += 1
        with self.store.read() as conn:
            return ingest_store.key_grant(conn, key_hash)


INGEST_KEY_CACHE_SECONDS = 2
_CACHE_FOR = dt.timedelta(seconds=INGEST_KEY_CACHE_SECONDS)
_INGEST_KEYS = "auth.ingest_keys"


def ingest_key_cache(ctx: AppContext) -> IngestKeyCache:
    """The app's ingestion-key cache (created on first use)."""
    cache = ctx.extras.get(_INGEST_KEYS)
    if cache is None:
        cache = ctx.extras[_INGEST_KEYS] = IngestKeyCache(ctx.store, ctx.clock)
    assert isinstance(cache, IngestKeyCache)
    return cache


async def require_ingest_key(ctx: AppContext, key: str | None, request: Request) -> IngestPrincipal:
    """The principal for an ``X-SP-Event-ApiKey`` value; raises ``Unauthorized`` (401) or
    ``RateLimited`` (429, too many failures from this client address)."""
    if not key:
        raise _missing(INGEST_HEADER)
    throttle.check(ctx, request)
    principal = await ingest_key_cache(ctx).principal(key)
    if principal is None:
        throttle.failed(ctx, request)
        await asyncio.to_thread(_note_rejected_key, ctx, keys.hash_key(key))
        raise Unauthorized(f"invalid, expired or revoked {INGEST_HEADER}")
    return principal


def _note_rejected_key(ctx: AppContext, key_hash: str) -> None:
    """A key that once worked tells whose agent is using an old key (the dashboard says so)."""
    with ctx.store.write() as conn:
        provider_store.record_key_rejected(conn, key_hash, ctx.clock.now())


IngestKeyHeader = Annotated[str | None, Security(_ingest_key)]
"""The raw header, declared as a security scheme; pass it to :func:`require_ingest_key`."""

AccountDep = Annotated[accounts.Account, Depends(require_account)]
SubAccountDep = Annotated[accounts.SubAccount, Depends(require_subaccount)]
