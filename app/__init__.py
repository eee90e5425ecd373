"""facesrv: a self-hosted face recognition server speaking the SenseTime v1 HTTP API."""

__version__ = "0.1.0"
