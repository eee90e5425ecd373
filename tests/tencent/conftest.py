"""Every test gets its own Tencent account; the server and photo site are shared."""

from __future__ import annotations

import pytest

from tests.servers import Server
from tests.utils.dialect_fixtures import http, photos, server  # noqa: F401 - fixtures
from tests.utils.tencent import TencentAccount, tencent_account


@pytest.fixture
def account(server: Server) -> TencentAccount:  # noqa: F811 - the imported fixture
    return tencent_account()
