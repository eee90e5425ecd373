"""Every test gets its own Alibaba account; the server and photo site are shared."""

from __future__ import annotations

import pytest

from tests.servers import Server
from tests.utils.alibaba import AlibabaAccount, alibaba_account
from tests.utils.dialect_fixtures import http, photos, server  # noqa: F401 - fixtures


@pytest.fixture
def account(server: Server) -> AlibabaAccount:  # noqa: F811 - the imported fixture
    return alibaba_account()
