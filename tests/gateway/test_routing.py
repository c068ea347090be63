"""Name resolution, privacy before fallback, cooldown order: pure functions."""

from __future__ import annotations

import pytest

from yoyu.errors import PrivacyError, UnknownModelError
from yoyu.gateway.config import Route, ServedModel
from yoyu.gateway.routing import Cooldowns, local_members, order_by_cooldown, resolve

SERVED = {
    "big": ServedModel("big", "local"),
    "small": ServedModel("small", "local"),
    "secret": ServedModel("secret", "local", private=True),
    "cloud": ServedModel("cloud", "remote"),
}
ROUTES = {
    "r1": Route("r1", ("big", "small", "cloud")),
    "private-route": Route("private-route", ("big", "cloud"), private=True),
    "cloud-only": Route("cloud-only", ("cloud",)),
}
ALIASES = {"coder": "r1", "c": "cloud"}


def remote(model_id: str) -> bool:
    return SERVED[model_id].backend == "remote"


def test_aliases_routes_and_models_resolve_to_chains() -> None:
    assert resolve("coder", served=SERVED, routes=ROUTES, aliases=ALIASES).chain == (
        "big",
        "small",
        "cloud",
    )
    assert resolve("small", served=SERVED, routes=ROUTES, aliases=ALIASES).chain == ("small",)
    with pytest.raises(UnknownModelError, match="coder"):
        resolve("nope", served=SERVED, routes=ROUTES, aliases=ALIASES)


def test_privacy_drops_remote_members_from_the_header_route_or_model_tag() -> None:
    by_header = resolve("r1", served=SERVED, routes=ROUTES, aliases={}, private_requested=True)
    assert local_members(by_header, remote) == ("big", "small")
    by_route = resolve("private-route", served=SERVED, routes=ROUTES, aliases={})
    assert local_members(by_route, remote) == ("big",)
    public = resolve("r1", served=SERVED, routes=ROUTES, aliases={})
    assert local_members(public, remote) == ("big", "small", "cloud")
    assert resolve("secret", served=SERVED, routes=ROUTES, aliases={}).private


def test_a_private_request_with_only_remote_routes_is_refused() -> None:
    resolution = resolve("c", served=SERVED, routes=ROUTES, aliases=ALIASES, private_requested=True)
    with pytest.raises(PrivacyError, match="stay on this machine"):
        local_members(resolution, remote)


def test_cooling_backends_move_to_the_back_and_recover() -> None:
    now = [0.0]
    cooldowns = Cooldowns(5.0, clock=lambda: now[0])
    cooldowns.failed("local")
    chain = ("big", "cloud")
    assert order_by_cooldown(chain, lambda m: cooldowns.cooling(SERVED[m].backend)) == (
        "cloud",
        "big",
    )
    now[0] = 5.1
    assert not cooldowns.cooling("local")
    cooldowns.failed("remote")
    cooldowns.succeeded("remote")
    assert not cooldowns.cooling("remote")
