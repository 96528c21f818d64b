"""ICE servers from the settings, and coturn REST-mode credentials per call."""

from __future__ import annotations

import base64
import subprocess

import pytest

from madoguchi.consult.turn import ice_servers, turn_credential
from madoguchi.settings import Settings, load_settings

from conftest import T0


def test_credentials_follow_the_coturn_formula() -> None:
    # The vector: `echo -n "1700000000:kokurakita.00000001" | openssl dgst -sha1 -hmac
    # "north-wind" -binary | base64`, which is what coturn's REST mode computes.
    credential = turn_credential("north-wind", "kokurakita.00000001", 1_700_000_000)
    assert credential.username == "1700000000:kokurakita.00000001"
    assert credential.password == "kP3NvmyqbqaRRsQXy2KCDQP6eJ0="
    assert len(base64.b64decode(credential.password)) == 20


def test_the_vector_matches_openssl() -> None:
    openssl = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", "north-wind", "-binary"],
        input=b"1700000000:kokurakita.00000001",
        capture_output=True,
        check=True,
    )
    assert base64.b64encode(openssl.stdout).decode() == "kP3NvmyqbqaRRsQXy2KCDQP6eJ0="


def test_no_servers_means_host_candidates_only() -> None:
    assert ice_servers(Settings(), "kokurakita.00000001", T0) == []


def test_stun_and_turn_with_short_lived_credentials() -> None:
    settings = load_settings(
        {
            "MADOGUCHI_STUN_URLS": "stun:stun.city.example:3478",
            "MADOGUCHI_TURN_URLS": "turn:turn.city.example:3478?transport=udp, "
            "turns:turn.city.example:5349",
            "MADOGUCHI_TURN_SECRET": "north-wind",
            "MADOGUCHI_TURN_TTL": "600",
        }
    )
    stun, turn = ice_servers(settings, "kokurakita.00000001", T0)
    assert stun == {"urls": ["stun:stun.city.example:3478"]}
    assert turn["urls"] == [
        "turn:turn.city.example:3478?transport=udp",
        "turns:turn.city.example:5349",
    ]
    assert turn["username"] == f"{int(T0) + 600}:kokurakita.00000001"
    expected = turn_credential("north-wind", "kokurakita.00000001", int(T0) + 600)
    assert turn["credential"] == expected.password
    # Another call, or the same call later, gets other credentials.
    other = ice_servers(settings, "kokurakita.00000002", T0)[1]
    assert other["credential"] != turn["credential"]


def test_the_secret_is_not_shown_with_the_settings() -> None:
    settings = load_settings({"MADOGUCHI_TURN_URLS": "turn:t:3478", "MADOGUCHI_TURN_SECRET": "s3"})
    assert "s3" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MADOGUCHI_STUN_URLS": "http://stun.example"}, "is not a stun:"),
        ({"MADOGUCHI_TURN_URLS": "turn:t:3478"}, "needs MADOGUCHI_TURN_SECRET"),
        ({"MADOGUCHI_TURN_TTL": "5"}, "MADOGUCHI_TURN_TTL"),
    ],
)
def test_bad_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)
