"""With Redis down the API answers 503 with a clear message, and recovers by itself."""

from __future__ import annotations

from pathlib import Path

import httpx

from madoguchi.embedded import RedisServer, find_redis_server, free_port
from madoguchi.settings import Settings
from madoguchi.web.app import create_app

from conftest import T0


async def test_api_answers_503_while_redis_is_down_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    server = RedisServer(find_redis_server(), tmp_path, port=port, fsync="everysec")
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        estimate_interval=0.0,
    )
    app = create_app(settings, clock=lambda: T0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for path in ["/readyz", "/api/v1/offices", "/api/v1/offices/kokurakita"]:
                response = await http.get(path)
                assert response.status_code == 503, path
                assert "unreachable" in response.json()["error"]["message"]
            taken = await http.post("/api/v1/offices/kokurakita/tickets", json={"service": "certs"})
            assert taken.status_code == 503
            assert (await http.get("/livez")).status_code == 200
            server.start()
            try:
                assert (await http.get("/readyz")).status_code == 200
                assert (await http.get("/api/v1/offices")).json() == {"offices": []}
                server.kill()
                assert (await http.get("/readyz")).status_code == 503
                server.start()
                assert (await http.get("/readyz")).status_code == 200
            finally:
                server.stop()
