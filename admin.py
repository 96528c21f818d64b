"""``madoguchi admin``: staff accounts from the command line.

The first administrator is made here (everyone else is then made on the admin
pages), and so is the way back in for an administrator who forgot the password or
lost the phone with the authenticator::

    madoguchi admin create USERNAME --name NAME [--role admin] [--office ID ...]
                                   [--service ID ...] [--require-totp] [--password-stdin]
    madoguchi admin password USERNAME [--password-stdin]
    madoguchi admin reset-totp USERNAME

The password is asked for twice at the terminal, or read from the first line of
standard input with ``--password-stdin`` (for scripts). Everything that can be
checked without Redis is checked before Redis is touched. The CLI decides which
Redis to use (``REDIS_URL``, or the embedded one of ``--data-dir``); this module
only does the account work.
"""

from __future__ import annotations

import argparse
import getpass
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from redis.asyncio import Redis

from .queue.exceptions import NotFound, QueueError
from .queue.tickets import QueueClient
from .settings import Settings
from .web.accounts import AccountStore, Role, StaffAccount, check_password, password_hasher
from .web.sessions import end_sessions


class AdminError(Exception):
    """The command was refused; the message says why."""


@dataclass(frozen=True)
class Order:
    """One ``madoguchi admin`` command, checked and with its password read."""

    action: str
    username: str
    account: StaffAccount | None = None
    password: str = ""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``admin`` and its subcommands to the ``madoguchi`` command."""
    summary = "manage staff accounts: make the first admin, reset a password"
    parser = commands.add_parser(
        "admin", help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="make a staff account", description="Make a staff account."
    )
    create.add_argument("username", help="2-32 lowercase letters, digits or ._-")
    create.add_argument("--name", required=True, help="the name shown to colleagues")
    create.add_argument(
        "--role",
        choices=[role.value for role in Role],
        default=Role.ADMIN.value,
        help="staff, supervisor or admin (default: admin)",
    )
    create.add_argument(
        "--office", action="append", default=[], metavar="ID", help="an office they work at"
    )
    create.add_argument(
        "--service", action="append", default=[], metavar="ID", help="a service they may serve"
    )
    create.add_argument(
        "--require-totp",
        action="store_true",
        help="require an authenticator app (set up at the first sign-in)",
    )
    password = actions.add_parser(
        "password",
        help="set a new password (ends the account's sessions)",
        description="Set a new password for an account; its sessions end.",
    )
    password.add_argument("username")
    reset = actions.add_parser(
        "reset-totp",
        help="forget an account's authenticator app (a lost phone)",
        description="Forget an account's authenticator app; its sessions end.",
    )
    reset.add_argument("username")
    for command in (create, password):
        command.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
    for command in (create, password, reset):
        command.add_argument(
            "--data-dir",
            type=Path,
            help="with REDIS_URL unset, the data directory of the embedded Redis "
            "(MADOGUCHI_DATA_DIR)",
        )


def prepare(options: argparse.Namespace, stdin: TextIO) -> Order:
    """Check the command and read the password, before any Redis is started."""
    try:
        if options.action == "create":
            role = Role(options.role)
            if role is not Role.ADMIN and not options.office:
                raise AdminError(f"a {role.value} account needs at least one --office")
            account = StaffAccount(
                options.username,
                options.name,
                role,
                tuple(dict.fromkeys(options.office)),
                tuple(dict.fromkeys(options.service)),
                totp_required=options.require_totp,
            )
            password = _password(options, stdin)
            check_password(password, account.username)
            return Order("create", account.username, account, password)
        if options.action == "password":
            password = _password(options, stdin)
            check_password(password, options.username)
            return Order("password", options.username, password=password)
        return Order(options.action, options.username)
    except QueueError as exc:
        raise AdminError(exc.message) from None


def _password(options: argparse.Namespace, stdin: TextIO) -> str:
    if options.password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise AdminError("no password on standard input")
        return password
    if not stdin.isatty():
        raise AdminError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = getpass.getpass("New password: ")
    if getpass.getpass("Same password again: ") != password:
        raise AdminError("the two passwords differ; nothing was changed")
    return password


async def run(order: Order, redis_url: str, settings: Settings) -> str:
    """Carry out ``order`` against the Redis at ``redis_url``; what to tell the operator."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    hasher = password_hasher(settings.password_hash_memory_kib, settings.password_hash_time_cost)
    accounts = AccountStore(redis, hasher=hasher)
    try:
        if order.action == "create":
            assert order.account is not None
            await _check_places(QueueClient(redis, settings), order.account)
            account = await accounts.create(order.account, order.password)
            return (
                f'created {account.role.value} "{account.username}" ({account.name}); '
                "sign in at /staff/signin"
            )
        if order.action == "password":
            await accounts.set_password(order.username, order.password)
            return f'new password set for "{order.username}"; their sessions have ended'
        await accounts.remove_totp(order.username)
        ended = await end_sessions(redis, order.username)
        return (
            f'"{order.username}" has no authenticator now ({ended} sessions ended); '
            "they set a new one up at /staff/totp"
        )
    except QueueError as exc:
        raise AdminError(exc.message) from None
    finally:
        await redis.aclose()


async def _check_places(queue: QueueClient, account: StaffAccount) -> None:
    """The account's offices exist, and each of its services is offered at one of them."""
    offered: set[str] = set()
    for office in account.offices:
        try:
            snapshot = await queue.snapshot(office, now=time.time())
        except NotFound:
            raise AdminError(
                f'office "{office}" does not exist: create it on the admin pages first '
                "(or run madoguchi demo for the demo city)"
            ) from None
        offered |= set(snapshot.services)
    missing = [s for s in account.services if s not in offered]
    if missing:
        raise AdminError(
            f'service "{missing[0]}" is not offered at {", ".join(account.offices) or "any office"}'
        )
