"""SenseTime v1: the first door onto the core. Its routes parse and format; services decide."""
