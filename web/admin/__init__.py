"""Administration: offices, services, counters, staff accounts, and the audit trail.

Every page needs the admin role, and every form its CSRF token. Forms are checked
field by field; a field's problem is a :class:`~.common.Problem` whose code the
templates turn into a sentence (through ``_()``), so that messages can be translated.

- :mod:`.offices`: offices, services (names in every supported language, prefix,
  mode, congestion bands) and counters;
- :mod:`.staff`: staff accounts and roles;
- :mod:`.audit`: who did what, from an office's event stream;
- :mod:`.kiosks`: kiosks, their enrollment codes, and the fleet page;
- :mod:`.appointments`: each service's appointment slots.
- :mod:`.form_library`: each office's forms library (PDFs sent to kiosks in calls).
"""

from __future__ import annotations

from starlette.routing import Route

from . import appointments, form_library, kiosks
from .audit import audit
from .offices import (
    counter_page,
    create_counter,
    create_office,
    create_service,
    deactivate_service,
    delete_counter,
    delete_service,
    index,
    new_counter,
    new_office,
    new_service,
    office_page,
    service_page,
    update_counter,
    update_office,
    update_service,
)
from .staff import (
    create_staff,
    disable_staff,
    enable_staff,
    end_staff_sessions,
    new_staff,
    remove_staff_totp,
    set_staff_password,
    staff_list,
    staff_page,
    update_staff,
)

routes = [
    Route("/admin/", index, methods=["GET"]),
    Route("/admin/offices/new", new_office, methods=["GET"]),
    Route("/admin/offices", create_office, methods=["POST"]),
    Route("/admin/offices/{office}", office_page, methods=["GET"]),
    Route("/admin/offices/{office}", update_office, methods=["POST"]),
    Route("/admin/offices/{office}/audit", audit, methods=["GET"]),
    Route("/admin/offices/{office}/services/new", new_service, methods=["GET"]),
    Route("/admin/offices/{office}/services", create_service, methods=["POST"]),
    Route("/admin/offices/{office}/services/{service}", service_page, methods=["GET"]),
    Route("/admin/offices/{office}/services/{service}", update_service, methods=["POST"]),
    Route(
        "/admin/offices/{office}/services/{service}/deactivate",
        deactivate_service,
        methods=["POST"],
    ),
    Route("/admin/offices/{office}/services/{service}/delete", delete_service, methods=["POST"]),
    Route("/admin/offices/{office}/counters/new", new_counter, methods=["GET"]),
    Route("/admin/offices/{office}/counters", create_counter, methods=["POST"]),
    Route("/admin/offices/{office}/counters/{counter}", counter_page, methods=["GET"]),
    Route("/admin/offices/{office}/counters/{counter}", update_counter, methods=["POST"]),
    Route("/admin/offices/{office}/counters/{counter}/delete", delete_counter, methods=["POST"]),
    Route("/admin/staff", staff_list, methods=["GET"]),
    Route("/admin/staff/new", new_staff, methods=["GET"]),
    Route("/admin/staff", create_staff, methods=["POST"]),
    Route("/admin/staff/{username}", staff_page, methods=["GET"]),
    Route("/admin/staff/{username}", update_staff, methods=["POST"]),
    Route("/admin/staff/{username}/password", set_staff_password, methods=["POST"]),
    Route("/admin/staff/{username}/disable", disable_staff, methods=["POST"]),
    Route("/admin/staff/{username}/enable", enable_staff, methods=["POST"]),
    Route("/admin/staff/{username}/sessions", end_staff_sessions, methods=["POST"]),
    Route("/admin/staff/{username}/totp/remove", remove_staff_totp, methods=["POST"]),
    *kiosks.routes,
    *appointments.routes,
    *form_library.routes,
]
