"""The forms library: admins upload PDFs, staff and kiosks of the office get the pages."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.consult.forms import (
    MAX_BYTES,
    PAGE_WIDTH,
    FormProblem,
    FormsLibrary,
    form_id_from,
    render,
    sample_pdf,
)
from madoguchi.demo import CITY, seed_forms
from madoguchi.kiosk.devices import Kiosk, KioskStore
from madoguchi.queue.model import Office
from madoguchi.web.accounts import Role

from conftest import T0, sign_in_form
from kiosks import enrolled, kiosk_http

MOJI_OFFICE = Office("moji", "門司区役所", "Moji Ward Office")

FORMS = "/admin/offices/kokurakita/forms"


@pytest.fixture
async def admin(http: httpx.AsyncClient, app: Starlette) -> str:
    return await sign_in_form(http, app, "boss", Role.ADMIN, ())


async def kiosk_client(
    app: Starlette, redis: Redis, kiosk_id: str, office: str
) -> httpx.AsyncClient:
    kiosk = Kiosk(kiosk_id, office, "足原市民センター", "1F", (), (), ("face",))
    return kiosk_http(app, await enrolled(KioskStore(redis), kiosk))


@pytest.fixture
async def kiosks(
    app: Starlette, aredis: Redis, office: Office
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    await app.state.queue.put_office(MOJI_OFFICE, now=T0)
    own = await kiosk_client(app, aredis, "k1", "kokurakita")
    other = await kiosk_client(app, aredis, "k2", MOJI_OFFICE.id)
    async with own, other:
        yield own, other


async def upload(
    http: httpx.AsyncClient,
    csrf: str,
    data: bytes,
    *,
    title: str = "介護保険 申請書",
    name: str = "kaigo-shinsei.pdf",
    kind: str = "application/pdf",
) -> httpx.Response:
    return await http.post(
        FORMS, data={"csrf": csrf, "title": title}, files={"file": (name, data, kind)}
    )


async def stored(redis: Redis) -> set[str]:
    return {str(k) for k in await redis.keys("mg:{kokurakita}:form*")}


async def test_an_admin_uploads_a_form_and_staff_and_kiosks_see_it(
    http: httpx.AsyncClient,
    app: Starlette,
    admin: str,
    aredis: Redis,
    kiosks: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    pdf = sample_pdf("Application", ["Name", "Address"], pages=2)
    sent = await upload(http, admin, pdf)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith(f"{FORMS}?done=uploaded")
    page = await http.get(FORMS)
    assert "介護保険 申請書" in page.text
    assert "kaigo-shinsei" in page.text
    listed = await http.get("/consult/forms/kokurakita")
    assert listed.json() == {
        "forms": [{"id": "kaigo-shinsei", "title": "介護保険 申請書", "pages": 2}]
    }
    own, other = kiosks
    for client in (http, own):
        png = await client.get("/consult/forms/kokurakita/kaigo-shinsei/pages/2.png")
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(png.content))
        assert image.format == "PNG"
        assert image.width == PAGE_WIDTH
        assert abs(image.height - PAGE_WIDTH * 842 / 595) <= 1  # A4's proportions
        # The drawn heading is dark on white.
        darkest, _ = image.convert("L").crop((100, 100, 600, 180)).getextrema()
        assert darkest < 80
    whole = await http.get("/consult/forms/kokurakita/kaigo-shinsei.pdf")
    assert whole.content == pdf
    assert whole.headers["content-type"] == "application/pdf"
    # Another office's kiosk, a kiosk asking for the PDF, a page that is not there.
    assert (
        await other.get("/consult/forms/kokurakita/kaigo-shinsei/pages/1.png")
    ).status_code == 403
    assert (await own.get("/consult/forms/kokurakita")).status_code in (303, 401)
    missing = await http.get("/consult/forms/kokurakita/kaigo-shinsei/pages/3.png")
    assert missing.status_code == 404
    assert "pages 1 to 2" in missing.json()["error"]["message"]
    # The same file again gets an id of its own.
    assert (await upload(http, admin, pdf)).status_code == 303
    ids = [f["id"] for f in (await http.get("/consult/forms/kokurakita")).json()["forms"]]
    assert sorted(ids) == ["kaigo-shinsei", "kaigo-shinsei-2"]


async def test_staff_of_another_office_are_refused(
    http: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    await FormsLibrary(aredis).add(
        "kokurakita", "Form", "form.pdf", sample_pdf("F", ["A"]), now=T0, by="staff:boss"
    )
    await sign_in_form(http, app, "outsider", Role.STAFF, ("moji",))
    for path in (
        "/consult/forms/kokurakita",
        "/consult/forms/kokurakita/form/pages/1.png",
        "/consult/forms/kokurakita/form.pdf",
    ):
        assert (await http.get(path)).status_code == 403, path


@pytest.mark.parametrize(
    ("data", "name", "says"),
    [
        (b"hello, this is not a PDF", "notes.pdf", "not a PDF document"),
        (b"%PDF-1.7\n" + b"\x00" * 2000, "broken.pdf", "not a PDF document"),
        (b"", "empty.pdf", "Choose a PDF file"),
    ],
)
async def test_what_is_not_a_pdf_is_refused_and_nothing_stored(
    http: httpx.AsyncClient, admin: str, aredis: Redis, data: bytes, name: str, says: str
) -> None:
    refused = await upload(http, admin, data, name=name)
    assert refused.status_code == 422
    assert says in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert await stored(aredis) == set()


async def test_too_large_or_too_long_is_refused(
    http: httpx.AsyncClient, admin: str, aredis: Redis
) -> None:
    huge = b"%PDF-1.7\n" + b"0" * (MAX_BYTES + 100_000)
    refused = await upload(http, admin, huge)
    assert refused.status_code == 413
    assert "5242880 bytes" in refused.json()["error"]["message"]
    long = await upload(http, admin, sample_pdf("Long", ["A"], pages=21))
    assert long.status_code == 422
    assert "This PDF has 21 pages: a form may have at most 20." in long.text
    untitled = await upload(http, admin, sample_pdf("F", ["A"]), title="")
    assert untitled.status_code == 422
    assert await stored(aredis) == set()
    with pytest.raises(FormProblem, match="too_large"):
        render(b"%PDF-" + b"0" * MAX_BYTES)


async def test_retitle_and_delete(http: httpx.AsyncClient, admin: str, aredis: Redis) -> None:
    assert (await upload(http, admin, sample_pdf("F", ["A"]))).status_code == 303
    changed = await http.post(f"{FORMS}/kaigo-shinsei", data={"csrf": admin, "title": "新しい題"})
    assert changed.status_code == 303
    forms = (await http.get("/consult/forms/kokurakita")).json()["forms"]
    assert forms[0]["title"] == "新しい題"
    blank = await http.post(f"{FORMS}/kaigo-shinsei", data={"csrf": admin, "title": ""})
    assert blank.status_code == 422
    no_token = await http.post(f"{FORMS}/kaigo-shinsei/delete", data={})
    assert no_token.status_code == 403
    gone = await http.post(f"{FORMS}/kaigo-shinsei/delete", data={"csrf": admin})
    assert gone.status_code == 303
    assert await stored(aredis) == set()
    assert (
        await http.post(f"{FORMS}/kaigo-shinsei/delete", data={"csrf": admin})
    ).status_code == 404


async def test_the_upload_needs_the_csrf_token(
    http: httpx.AsyncClient, admin: str, aredis: Redis
) -> None:
    refused = await upload(http, "w" * 43, sample_pdf("F", ["A"]))
    assert refused.status_code == 403
    wrong_kind = await http.post(FORMS, data={"csrf": admin, "title": "x"})
    assert wrong_kind.status_code == 415
    assert await stored(aredis) == set()


def test_form_ids() -> None:
    assert form_id_from("C:\\forms\\Kaigo Shinsei.PDF", "x") == "kaigo-shinsei"
    assert form_id_from("申請書.pdf", "Moving notice") == "moving-notice"
    assert form_id_from("申請書.pdf", "転入届") == "form"
    assert re.fullmatch(r"[a-z0-9_-]{1,80}", form_id_from("a" * 200 + ".pdf", ""))


async def test_the_demo_offices_get_their_forms(aredis: Redis) -> None:
    library = FormsLibrary(aredis)
    added = await seed_forms(library, CITY[:2])
    assert added == 4
    forms = await library.all(CITY[0].office.id)
    assert sorted(f.pages for f in forms) == [1, 2]
    assert {f.id for f in forms} == {"care-application", "child-allowance"}
    png = await library.page(CITY[0].office.id, "care-application", 2)
    assert Image.open(io.BytesIO(png)).width == PAGE_WIDTH
    assert await seed_forms(library, CITY[:2]) == 0
