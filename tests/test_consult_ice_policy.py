"""``MADOGUCHI_ICE_TRANSPORT_POLICY``: media through TURN only, or any candidate."""

from __future__ import annotations

import pytest

from madoguchi.settings import Settings, load_settings

TURN = {"MADOGUCHI_TURN_URLS": "turn:turn.city.example:3478", "MADOGUCHI_TURN_SECRET": "s3"}


def test_any_candidate_by_default() -> None:
    assert Settings().ice_transport_policy == "all"
    assert load_settings({}).ice_transport_policy == "all"


def test_relay_with_turn() -> None:
    settings = load_settings({**TURN, "MADOGUCHI_ICE_TRANSPORT_POLICY": "relay"})
    assert settings.ice_transport_policy == "relay"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({**TURN, "MADOGUCHI_ICE_TRANSPORT_POLICY": "host"}, 'must be "all" or "relay"'),
        ({**TURN, "MADOGUCHI_ICE_TRANSPORT_POLICY": "Relay"}, 'not "Relay"'),
        ({"MADOGUCHI_ICE_TRANSPORT_POLICY": "relay"}, "relay needs MADOGUCHI_TURN_URLS"),
    ],
)
def test_a_wrong_policy_is_refused_with_a_clear_message(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)
