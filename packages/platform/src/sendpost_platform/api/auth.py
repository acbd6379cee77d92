"""Authentication dependencies for the three kinds of API key.

- ``AccountDep``: ``X-Account-ApiKey`` → :class:`~sendpost_platform.store.accounts.Account`
  (manage providers, pools, domains; read events).
- ``SubAccountDep``: ``X-SubAccount-ApiKey`` → :class:`~sendpost_platform.store.accounts.SubAccount`
  (send).
- ``IngestKeyDep``: ``X-SP-Event-ApiKey`` → :class:`IngestPrincipal` (the provider whose current
  key, or rotated key still in its grace period, was given; deleted providers' keys fail).

Each answers 401 (``Unauthorized``) when the header is missing or the key unknown. Use them as
route parameters: ``def route(account: AccountDep) -> ...``. The headers are declared as
security schemes, so they appear in the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from sendpost_platform import keys
from sendpost_platform.api.deps import ContextDep
from sendpost_platform.errors import Unauthorized
from sendpost_platform.store import accounts, providers

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
    ctx: ContextDep, key: Annotated[str | None, Security(_account_key)]
) -> accounts.Account:
    if not key:
        raise _missing(ACCOUNT_HEADER)
    with ctx.store.read() as conn:
        account = accounts.account_by_key(conn, key)
    if account is None:
        raise Unauthorized(f"invalid {ACCOUNT_HEADER}")
    return account


def require_subaccount(
    ctx: ContextDep, key: Annotated[str | None, Security(_subaccount_key)]
) -> accounts.SubAccount:
    if not key:
        raise _missing(SUBACCOUNT_HEADER)
    with ctx.store.read() as conn:
        sub = accounts.subaccount_by_key(conn, key)
    if sub is None:
        raise Unauthorized(f"invalid {SUBACCOUNT_HEADER}")
    return sub


def require_ingest_key(
    ctx: ContextDep, key: Annotated[str | None, Security(_ingest_key)]
) -> IngestPrincipal:
    if not key:
        raise _missing(INGEST_HEADER)
    with ctx.store.read() as conn:
        provider_id = providers.provider_id_for_ingest_key(conn, key, now=ctx.clock.now())
    if provider_id is None:
        raise Unauthorized(f"invalid, expired or revoked {INGEST_HEADER}")
    return IngestPrincipal(provider_id, keys.hash_key(key))


AccountDep = Annotated[accounts.Account, Depends(require_account)]
SubAccountDep = Annotated[accounts.SubAccount, Depends(require_subaccount)]
IngestKeyDep = Annotated[IngestPrincipal, Depends(require_ingest_key)]
