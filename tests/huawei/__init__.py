"""The Huawei FRS door, driven over real HTTP by the official SDK, curl-style callers and
hand-signed requests."""
