"""Sub-accounts, domains and the dedicated-IP refusals through SendPost's official SDK."""

from __future__ import annotations

import pytest
import sendpost_python_sdk as sp
from sendpost_platform.store import accounts, messages
from sendpost_python_sdk.exceptions import (
    ConflictException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
)

from devtools.dns import DnsServer
from tests.platform.conftest import add_provider
from tests.platform.sendpost_api.conftest import Sdk


def test_sub_accounts(sdk: Sdk) -> None:
    """Create (201 + SubAccount with its key, once), list, get, rename, delete (200 + {id,
    message}); the new key works at once and stops working when the sub-account is deleted;
    the default sub-account cannot be deleted; names are unique."""
    api = sp.SubAccountApi(sdk.client)
    created = api.create_sub_account(sp.NewSubAccount(name="Marketing"))
    assert (created.name, created.type, created.account_id) == (
        "Marketing",
        1,
        sdk.seed.account.account_id,
    )
    assert created.api_key is not None
    assert created.created is not None
    assert created.created > 10**18
    listed = api.get_all_sub_accounts()
    assert [(s.name, s.type, s.api_key) for s in listed] == [
        ("Acme", 0, None),
        ("Marketing", 1, None),
    ]
    assert [s.name for s in api.get_all_sub_accounts(search="mark")] == ["Marketing"]
    assert [s.name for s in api.get_all_sub_accounts(limit=1, offset=1)] == ["Marketing"]
    assert created.id is not None
    renamed = api.update_sub_account(created.id, sp.UpdateSubAccount(name="Promotions"))
    assert (renamed.id, renamed.name) == (created.id, "Promotions")
    assert api.get_sub_account(created.id).name == "Promotions"
    with pytest.raises(ConflictException):
        api.create_sub_account(sp.NewSubAccount(name="promotions"))

    with sdk.for_subaccount(created.api_key) as own:
        domains = sp.DomainApi(own)
        assert domains.get_all_domains() == []
        gone = api.delete_sub_account(created.id)
        assert (gone.id, gone.message) == (created.id, "sub-account 'Promotions' deleted")
        with pytest.raises(UnauthorizedException):
            domains.get_all_domains()
    with pytest.raises(NotFoundException):
        api.get_sub_account(created.id)
    with pytest.raises(ForbiddenException):
        api.delete_sub_account(sdk.seed.account.subaccount_id)


def test_domains(sdk: Sdk, dns_server: DnsServer) -> None:
    """Create (201 + Domain with ``dkim`` and ``returnPath`` records), list, get, verify once
    published in DNS, delete (200 + {id, message}). The SDK types ``domain_id`` as a string
    (StrictStr) although SendPost's IDs are integers, so the tests pass ``str(id)``."""
    api = sp.DomainApi(sdk.client)
    created = api.create_sub_account_domain(sp.CreateDomainRequest(name="shop.example"))
    assert created.id is not None
    assert created.dkim is not None
    assert created.return_path is not None
    assert (created.dkim.type, created.dkim.host) == ("TXT", "sendpost._domainkey.shop.example")
    assert (created.return_path.type, created.return_path.host, created.return_path.text_value) == (
        "CNAME",
        "sp-bounce.shop.example",
        "bounce.sendpost.example",
    )
    assert (created.verified, created.dkim_verified, created.return_path_verified) == (
        False,
        False,
        False,
    )
    domain_id = str(created.id)  # the SDK's domain_id is a StrictStr
    assert api.get_sub_account_domain(domain_id).to_dict() == created.to_dict()
    assert [d.name for d in api.get_all_domains(search="shop")] == ["shop.example"]
    with pytest.raises(ConflictException):
        api.create_sub_account_domain(sp.CreateDomainRequest(name="shop.example"))

    for record in (created.dkim, created.return_path):
        assert record.host is not None
        assert record.type is not None
        assert record.text_value is not None
        dns_server.add(record.host, record.type, record.text_value)
    verify = sdk.client.param_serialize(
        "POST",
        "/subaccount/domain/{domain_id}/verify",
        path_params={"domain_id": domain_id},
        header_params={"X-SubAccount-ApiKey": sdk.seed.account.subaccount_key},
    )
    answer = sdk.client.call_api(*verify)
    answer.read()
    assert answer.status == 200, answer.data
    checked = api.get_sub_account_domain(domain_id)
    assert (checked.verified, checked.dkim_verified, checked.return_path_verified) == (
        True,
        True,
        True,
    )
    gone = api.delete_sub_account_domain(domain_id)
    assert (gone.id, gone.message) == (created.id, "domain 'shop.example' deleted")
    with pytest.raises(NotFoundException):
        api.get_sub_account_domain(domain_id)


def test_dedicated_ips_are_refused_with_a_reason(sdk: Sdk) -> None:
    """Every IPApi operation answers 404 ``no_dedicated_ips`` saying Custom SMTP has none and
    pointing at IP pools; without the account key it is 401 first."""
    api = sp.IPApi(sdk.client)
    calls = [
        api.get_all_ips,
        lambda: api.get_specific_ip(1),
        lambda: api.update_ip(1, sp.IPUpdateRequest(auto_warmup_enabled=True)),
        lambda: api.delete_ip(1),
        lambda: api.allocate_new_ip(sp.IPAllocationRequest(ips=["192.0.2.1"])),
    ]
    for call in calls:
        with pytest.raises(NotFoundException) as refused:
            call()
        body = refused.value.body or ""
        assert '"code":"no_dedicated_ips"' in body
        assert "Custom SMTP has no dedicated IPs" in body
    with sdk.for_subaccount("nope") as other:
        other.configuration.api_key["accountAuth"] = "wrong"
        with pytest.raises(UnauthorizedException):
            sp.IPApi(other).get_all_ips()


def test_another_accounts_resources_are_not_found(sdk: Sdk) -> None:
    """A pool, domain, sub-account, message and sub-account statistics of another account are
    404 with this account's keys, and never listed."""
    store, clock = sdk.seed.store, sdk.seed.clock
    with store.write() as conn:
        stranger = accounts.create_account(conn, name="Stranger", now=clock.now())
        provider, _ = add_provider(conn, stranger.account_id, clock)
        message = messages.insert_message(
            conn,
            account_id=stranger.account_id,
            subaccount_id=stranger.subaccount_id,
            recipient="r@example.org",
            sender="s@example.org",
            now=clock.now(),
        )
    with sdk.for_subaccount(stranger.subaccount_key) as theirs:
        theirs.configuration.api_key["accountAuth"] = stranger.account_key
        pool = sp.IPPoolsApi(theirs).create_ip_pool(
            sp.IPPoolCreateRequest(name="theirs", tpsps=[provider.id])
        )
        domain = sp.DomainApi(theirs).create_sub_account_domain(
            sp.CreateDomainRequest(name="theirs.example")
        )
    assert pool.id is not None
    assert domain.id is not None
    today = clock.now().date()
    calls = [
        lambda: sp.IPPoolsApi(sdk.client).get_ip_pool_by_id(pool.id),
        lambda: sp.IPPoolsApi(sdk.client).delete_ip_pool(pool.id),
        lambda: sp.DomainApi(sdk.client).get_sub_account_domain(str(domain.id)),
        lambda: sp.DomainApi(sdk.client).delete_sub_account_domain(str(domain.id)),
        lambda: sp.SubAccountApi(sdk.client).get_sub_account(stranger.subaccount_id),
        lambda: sp.SubAccountApi(sdk.client).delete_sub_account(stranger.subaccount_id),
        lambda: sp.MessageApi(sdk.client).get_message_by_id(message.uuid),
        lambda: sp.StatsApi(sdk.client).account_subaccount_stat_subaccount_id_get(
            today, today, stranger.subaccount_id
        ),
    ]
    for call in calls:
        with pytest.raises(NotFoundException):
            call()
    assert sp.IPPoolsApi(sdk.client).get_all_ip_pools() == []
    assert sp.DomainApi(sdk.client).get_all_domains() == []
    assert [s.name for s in sp.SubAccountApi(sdk.client).get_all_sub_accounts()] == ["Acme"]
