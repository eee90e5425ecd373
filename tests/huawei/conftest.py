"""Every test gets its own Huawei account; the server and photo site are shared."""

from __future__ import annotations

import pytest

from tests.servers import Server
from tests.utils.dialect_fixtures import http, photos, server  # noqa: F401 - fixtures
from tests.utils.huawei import HuaweiAccount, huawei_account


@pytest.fixture
def account(server: Server) -> HuaweiAccount:  # noqa: F811 - the imported fixture
    return huawei_account()
