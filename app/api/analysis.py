"""An image source (upload or url) to its analysis, through the fair pools: every door's path.

The download waits for a slot of the fetch pool and the analysis for one of the inference pool,
both without holding a thread (app.api.pools), so a door's handler stays a few lines.
"""

from __future__ import annotations

from functools import partial

from app.api.pools import get_pools
from app.services import detection
from app.services.detection import Analysis


async def analysed(
    account_id: int,
    source: bytes | str,
    *,
    attributes: bool = False,
    emotions: bool = False,
    auto_rotate: bool = False,
) -> tuple[bytes, Analysis]:
    """The image's bytes (downloaded when `source` is a url) and their analysis."""
    pools = get_pools()
    data = source if isinstance(source, bytes) else await pools.download(account_id, source)
    analyse = partial(
        detection.analyse, data, attributes=attributes, emotions=emotions, auto_rotate=auto_rotate
    )
    return data, await pools.inference.run(account_id, analyse)
