"""Alibaba Cloud Green "sface" (API 2018-05-09, `/green/sface/...`): a door onto the core."""
