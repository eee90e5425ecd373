"""A backend that failed for now (`errors.unavailable`: Milvus down or restarting) is a
retryable error at every door, never a 500, and keeps its Retry-After (the end-to-end case, a
real Milvus server stopped under a SenseTime search, is in tests/test_milvus.py)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from app.api.responses import ApiResponse
from app.api.routing import enveloped
from app.dialects.alibaba.errors import from_api_error as alibaba
from app.dialects.huawei.errors import from_api_error as huawei
from app.dialects.tencent.errors import Code
from app.dialects.tencent.errors import from_api_error as tencent
from app.errors import unavailable

REASON = "the vector database (Milvus) failed: down; retry in 5 s"


def test_each_door_says_retry_later() -> None:
    error = unavailable(REASON, 5)
    assert (error.http_status, error.status, error.headers) == (
        503,
        "SERVICE_UNAVAILABLE",
        {"Retry-After": "5"},
    )
    gateway = alibaba(error)
    assert (gateway.http_status, gateway.code) == (503, "ServiceUnavailable")
    assert gateway.message == REASON
    frs = huawei(error)
    assert (frs.http_status, frs.code, frs.message) == (503, "FRS.0018", REASON)
    assert tencent(error).code is Code.INTERNAL and REASON in str(tencent(error))


def test_an_enveloped_route_sends_the_retry_after() -> None:
    router = APIRouter(route_class=enveloped(lambda e: ApiResponse({"e": e and e.status}, 503)))

    @router.get("/down")
    def down() -> None:
        raise unavailable(REASON, 5)

    app = FastAPI()
    app.include_router(router)
    response = TestClient(app).get("/down")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
    assert response.json() == {"e": "SERVICE_UNAVAILABLE"}
