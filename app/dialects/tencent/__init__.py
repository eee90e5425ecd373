"""Tencent Cloud legacy face API (`recognition.image.myqcloud.com`): a door onto the core."""
