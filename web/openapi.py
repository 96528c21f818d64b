"""The OpenAPI 3.1 document of ``/api/v1/``, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed request (not JSON, not an object).",
        401: "Not signed in, the session has ended, or the sign-in was not right.",
        403: "Not allowed: another office, no CSRF token, or an authenticator to set up first.",
        429: "Too many failed sign-ins for this user name or address; wait 15 minutes.",
        404: "Unknown office, service, counter or ticket.",
        409: "The ticket or counter is not in a state that allows this.",
        413: "Request body too large.",
        415: "Body is not application/json.",
        422: "A field is missing, of the wrong type or out of range.",
        503: "The queue store is unreachable; retry shortly.",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


OFFICE = {"name": "office", "in": "path", "required": True, "schema": {"type": "string"}}
TICKET = {
    "name": "ticket",
    "in": "path",
    "required": True,
    "description": "The resident's token, or (staff only) the ticket id.",
    "schema": {"type": "string"},
}
COUNTER = {"name": "counter", "in": "path", "required": True, "schema": {"type": "string"}}
#: Staff operations need the session cookie and, to change anything, its CSRF token.
STAFF: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]
SECURITY_SCHEMES = {
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-madoguchi",
        "description": "Set by POST /api/v1/session (named madoguchi on plain http://localhost).",
    },
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The csrf that POST /api/v1/session returned; on every change.",
    },
}
SIGN_IN = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string"},
        "code": {
            "type": "string",
            "description": "The authenticator code, if there is one.",
        },
    },
}
SIGNED_IN = {
    "type": "object",
    "properties": {
        "csrf": {"type": "string", "description": "Send it as X-CSRF-Token on every change."},
        "username": {"type": "string"},
        "name": {"type": "string"},
        "role": {"enum": ["staff", "supervisor", "admin"]},
        "offices": {"type": "array", "items": {"type": "string"}},
        "services": {"type": "array", "items": {"type": "string"}},
        "second_factor_required": {
            "type": "boolean",
            "description": "An authenticator must be set up at /staff/totp before anything else.",
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Estimate": {
        "type": ["object", "null"],
        "description": "Wait until the ticket is called: a point estimate and an 80 % interval.",
        "properties": {
            "wait_seconds": {"type": "integer"},
            "low_seconds": {"type": "integer"},
            "high_seconds": {"type": "integer"},
            "wait_minutes": {"type": "integer"},
            "low_minutes": {"type": "integer"},
            "high_minutes": {"type": "integer"},
            "ahead": {"type": "integer", "description": "Tickets expected to be called first."},
            "servers": {"type": "integer", "description": "Open counters for the service."},
        },
    },
    "Ticket": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "number": {"type": "string", "examples": ["A-023"]},
            "office": {"type": "string"},
            "service": {"type": "string"},
            "channel": {"enum": ["kiosk", "reception", "phone", "web"]},
            "priority": {"type": "boolean"},
            "status": {
                "enum": [
                    "waiting",
                    "called",
                    "serving",
                    "done",
                    "no_show",
                    "cancelled",
                    "abandoned",
                ]
            },
            "position": {
                "type": "integer",
                "description": "1 for the next in its service's line; 0 once called.",
            },
            "issued_at": {"type": "string", "format": "date-time"},
            "appointment_at": {"type": ["string", "null"], "format": "date-time"},
            "called_at": {"type": ["string", "null"], "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "counter": {"type": ["string", "null"]},
            "recalls": {"type": "integer"},
            "estimate": _ref("Estimate"),
            "token": {"type": "string"},
            "url": {"type": "string"},
        },
    },
    "TicketEnvelope": {
        "type": "object",
        "properties": {"ticket": {"oneOf": [_ref("Ticket"), {"type": "null"}]}},
    },
    "NewTicket": {
        "type": "object",
        "required": ["service"],
        "additionalProperties": False,
        "properties": {
            "service": {"type": "string"},
            "channel": {"enum": ["kiosk", "reception", "phone", "web"], "default": "web"},
            "priority": {"type": "boolean", "default": False, "description": "Staff only."},
            "appointment_at": {
                "type": "string",
                "format": "date-time",
                "description": "Staff only.",
            },
            "idempotency_key": {"type": "string", "maxLength": 128},
        },
    },
    "Counter": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"enum": ["open", "paused", "closed"]},
            "services": {"type": "array", "items": {"type": "string"}},
            "ticket": {"type": ["string", "null"]},
        },
    },
    "CounterEnvelope": {"type": "object", "properties": {"counter": _ref("Counter")}},
    "OfficeSummary": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name_ja": {"type": "string"},
            "name_en": {"type": "string"},
            "timezone": {"type": "string"},
            "url": {"type": "string"},
        },
    },
    "OfficeStatus": {
        "type": "object",
        "properties": {
            "office": _ref("OfficeSummary"),
            "as_of": {"type": "string", "format": "date-time"},
            "last_event": {
                "type": "string",
                "description": "Id of the latest event this status reflects (an SSE event id).",
            },
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "prefix": {"type": "string"},
                        "name_ja": {"type": "string"},
                        "name_en": {"type": "string"},
                        "mode": {"enum": ["in_person", "remote"]},
                        "active": {"type": "boolean"},
                        "waiting": {"type": "integer"},
                        "open_counters": {"type": "integer"},
                        "estimate_for_new_ticket": _ref("Estimate"),
                    },
                },
            },
            "counters": {"type": "array", "items": _ref("Counter")},
        },
    },
}


def _action(
    summary: str,
    parameters: list[dict[str, Any]],
    result: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A staff operation: POST, session cookie and CSRF token, an optional JSON body."""
    operation: dict[str, Any] = {
        "summary": summary,
        "security": STAFF,
        "parameters": parameters,
        "responses": {
            "200": _json(_ref(result), "The result of the change."),
            **_errors(400, 401, 403, 404, 409, 413, 422, 503),
        },
    }
    if body is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return {"post": operation}


def _ticket_action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return _action(summary, [OFFICE, TICKET], "TicketEnvelope", body)


def _counter_action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return _action(summary, [OFFICE, COUNTER], "CounterEnvelope", body)


@cache
def document() -> dict[str, Any]:
    base = "/api/v1/offices/{office}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Madoguchi API",
            "version": __version__,
            "description": "Take and follow tickets; run counters (staff sign in first, "
            "with POST /api/v1/session).",
        },
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "paths": {
            "/api/v1/session": {
                "post": {
                    "summary": "Sign in: sets the session cookie and returns its CSRF token",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": SIGN_IN}},
                    },
                    "responses": {
                        "200": _json(SIGNED_IN, "Signed in."),
                        **_errors(400, 401, 413, 415, 422, 429, 503),
                    },
                },
                "delete": {
                    "summary": "Sign out: the session ends at once",
                    "security": STAFF,
                    "responses": {
                        "200": _json({"type": "object"}, "Signed out."),
                        **_errors(401, 403, 503),
                    },
                },
            },
            "/api/v1/offices": {
                "get": {
                    "summary": "Every office",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "offices": {"type": "array", "items": _ref("OfficeSummary")}
                                },
                            },
                            "The offices.",
                        ),
                        **_errors(503),
                    },
                }
            },
            base: {
                "get": {
                    "summary": "An office's status: per service, waiting, estimate, open counters",
                    "parameters": [OFFICE],
                    "responses": {
                        "200": _json(_ref("OfficeStatus"), "The office now."),
                        **_errors(404, 503),
                    },
                }
            },
            f"{base}/tickets": {
                "post": {
                    "summary": "Take a ticket",
                    "parameters": [
                        OFFICE,
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 128},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("NewTicket")}},
                    },
                    "responses": {
                        "201": _json(_ref("TicketEnvelope"), "The new ticket."),
                        "200": _json(_ref("TicketEnvelope"), "Same idempotency key: same ticket."),
                        **_errors(400, 401, 404, 409, 413, 415, 422, 503),
                    },
                }
            },
            f"{base}/tickets/{{ticket}}": {
                "get": {
                    "summary": "Read a ticket by its token",
                    "parameters": [OFFICE, TICKET],
                    "responses": {
                        "200": _json(_ref("TicketEnvelope"), "The ticket."),
                        **_errors(401, 404, 503),
                    },
                },
                "delete": {
                    "summary": "Cancel a ticket by its token",
                    "parameters": [OFFICE, TICKET],
                    "responses": {
                        "200": _json(_ref("TicketEnvelope"), "The cancelled ticket."),
                        **_errors(401, 404, 409, 503),
                    },
                },
            },
            f"{base}/tickets/{{ticket}}/recall": _ticket_action("Call a called ticket again"),
            f"{base}/tickets/{{ticket}}/no-show": _ticket_action("Mark a called ticket no-show"),
            f"{base}/tickets/{{ticket}}/start": _ticket_action("Start serving a called ticket"),
            f"{base}/tickets/{{ticket}}/finish": _ticket_action("Finish serving a ticket"),
            f"{base}/tickets/{{ticket}}/transfer": _ticket_action(
                "Move a ticket to another service, keeping its place",
                {
                    "type": "object",
                    "required": ["service"],
                    "properties": {"service": {"type": "string"}},
                },
            ),
            f"{base}/tickets/{{ticket}}/cancel": _ticket_action(
                "Cancel a ticket (for the resident, or as abandoned)",
                {
                    "type": "object",
                    "properties": {"reason": {"enum": ["resident", "abandoned"]}},
                },
            ),
            f"{base}/counters/{{counter}}/open": _counter_action(
                "Open or resume a counter, or change its services",
                {
                    "type": "object",
                    "properties": {
                        "services": {"type": "array", "items": {"type": "string"}},
                        "name": {"type": "string", "maxLength": 40},
                    },
                },
            ),
            f"{base}/counters/{{counter}}/pause": _counter_action("Pause a counter"),
            f"{base}/counters/{{counter}}/close": _counter_action("Close a counter"),
            f"{base}/counters/{{counter}}/call-next": _action(
                "Call the counter's next ticket (the ticket is null when none waits)",
                [OFFICE, COUNTER],
                "TicketEnvelope",
            ),
        },
    }
