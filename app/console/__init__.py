"""The web console at /console: plain ES modules and CSS served from `static/`, no build step.

Every action goes through the public SenseTime API, as any client's would; the one private
endpoint, face thumbnails, is in `routes.py`.
"""
