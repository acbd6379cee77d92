"""Dedicated IPs (SendPost's ``IPApi``): not part of Custom SMTP.

Mail leaves through the customer's own SMTP servers, so there are no SendPost IPs to allocate,
list, warm up or delete. Every ``IPApi`` operation (``GET /api/v1/account/ip/``,
``GET|PUT|DELETE /api/v1/account/ip/{ip_id}``, ``PUT /api/v1/account/ip/allocate``) answers
404 ``{"error": ..., "code": "no_dedicated_ips"}`` after checking the account key, which the SDK
raises as ``NotFoundException`` carrying that body. Route mail with IP pools of Custom SMTP
providers instead (``api/pools.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import APIRouter, Body

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.sendpost import ERROR_CONTENT
from sendpost_platform.errors import NotFound

router = APIRouter(tags=["dedicated IPs (not in Custom SMTP)"])

MESSAGE = (
    "Custom SMTP has no dedicated IPs: mail leaves through your own SMTP providers; route it with"
    " IP pools of Custom SMTP providers (/api/v1/account/ippool)"
)
_ANSWER: dict[int | str, dict[str, Any]] = {404: {"description": MESSAGE, **ERROR_CONTENT}}


class NoDedicatedIps(NotFound):
    code: ClassVar[str] = "no_dedicated_ips"


def _refuse() -> NoDedicatedIps:
    return NoDedicatedIps(MESSAGE)


@router.get("/api/v1/account/ip/", status_code=404, responses=_ANSWER)
def get_all_ips(_account: AccountDep) -> None:
    raise _refuse()


@router.get("/api/v1/account/ip/{ip_id}", status_code=404, responses=_ANSWER)
def get_specific_ip(_account: AccountDep, ip_id: str) -> None:
    raise _refuse()


@router.put("/api/v1/account/ip/allocate", status_code=404, responses=_ANSWER)
def allocate_new_ip(_account: AccountDep, _body: Any = Body(None)) -> None:  # noqa: B008
    raise _refuse()


@router.put("/api/v1/account/ip/{ip_id}", status_code=404, responses=_ANSWER)
def update_ip(_account: AccountDep, ip_id: str, _body: Any = Body(None)) -> None:  # noqa: B008
    raise _refuse()


@router.delete("/api/v1/account/ip/{ip_id}", status_code=404, responses=_ANSWER)
def delete_ip(_account: AccountDep, ip_id: str) -> None:
    raise _refuse()
