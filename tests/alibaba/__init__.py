"""The Alibaba Green sface door, driven over real HTTP by the official SDK and by hand-signed
requests."""
