"""The Tencent door, driven over real HTTP by the official SDK and by hand-built requests."""
